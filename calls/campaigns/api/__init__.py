"""The campaigns and do-not-call REST API (F-67), mounted under /api/."""
