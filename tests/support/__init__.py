"""What several test folders use: processes, paths, data, models and servers, defined once."""
