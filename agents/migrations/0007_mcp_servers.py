from django.db import migrations, models


class Migration(migrations.Migration):
    """The seam of issue 18: h18-mcp's migration of the same name replaces this one."""

    dependencies = [
        ('agents', '0006_legacy_path'),
    ]

    operations = [
        migrations.AddField(
            model_name='agentprofile',
            name='mcp_servers',
            field=models.JSONField(blank=True, default=list, verbose_name='MCP servers'),
        ),
    ]
