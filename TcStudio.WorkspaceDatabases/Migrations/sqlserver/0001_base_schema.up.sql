-- The workspace base schema: TC Studio's bookkeeping inside a workspace database. Batches are separated by GO.
CREATE SCHEMA tcstudio AUTHORIZATION dbo;
GO
CREATE TABLE tcstudio.tcstudio_schema_migrations (
    version int NOT NULL CONSTRAINT pk_tcstudio_schema_migrations PRIMARY KEY,
    name nvarchar(200) NOT NULL,
    checksum char(64) NOT NULL,
    applied_at datetimeoffset(3) NOT NULL CONSTRAINT df_tcstudio_schema_migrations_applied_at DEFAULT SYSDATETIMEOFFSET(),
    duration_ms int NOT NULL CONSTRAINT ck_tcstudio_schema_migrations_duration CHECK (duration_ms >= 0)
);

-- One row per deployment still in effect; the newest row of a procedure is what the environment runs.
CREATE TABLE tcstudio.procedure_deployments (
    id bigint IDENTITY(1, 1) NOT NULL CONSTRAINT pk_procedure_deployments PRIMARY KEY,
    [procedure] nvarchar(256) NOT NULL,
    checksum char(64) NOT NULL,
    deployed_at datetimeoffset(3) NOT NULL CONSTRAINT df_procedure_deployments_deployed_at DEFAULT SYSDATETIMEOFFSET(),
    deployed_by nvarchar(128) NOT NULL,
    previous_definition nvarchar(max) NULL
);
