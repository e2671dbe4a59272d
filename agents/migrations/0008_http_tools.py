from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_mcp_servers'),
    ]

    operations = [
        migrations.AddField(
            model_name='agentprofile',
            name='http_tools',
            field=models.JSONField(blank=True, default=list, verbose_name='HTTP tools'),
        ),
    ]
