"""The central household registry: entities, versions, matching, merges, change feed."""
