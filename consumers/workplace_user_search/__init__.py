"""upsertWorkplaceUserToElasticSearchV2: WorkplaceUsers_V2 changes -> OpenSearch index."""
