DROP TABLE tcstudio.procedure_deployments;
DROP TABLE tcstudio.tcstudio_schema_migrations;
GO
DROP SCHEMA tcstudio;
