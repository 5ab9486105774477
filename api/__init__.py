"""The HTTP edge of carenet: app factory, settings, routes, error handling, command line."""
