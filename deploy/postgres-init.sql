-- Run once by the postgres image on an empty data volume (docker-compose.yml): the second database.
-- `accounts` is POSTGRES_DB; Temporal's auto-setup creates `temporal` and `temporal_visibility` itself.
CREATE DATABASE advances;
