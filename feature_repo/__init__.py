"""The Feast feature repository: entities, data sources, feature views, feature services."""
