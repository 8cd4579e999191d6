"""The operator HTTP API: projected views, commands, access control and Open311 GeoReport v2."""
