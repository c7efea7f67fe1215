-- The workspace base schema: TC Studio's bookkeeping inside a workspace database, owned by the database's own
-- (non-superuser) owner role. Procedures themselves live in the workspace's schemas (public by default).
CREATE SCHEMA tcstudio;
COMMENT ON SCHEMA tcstudio IS 'TC Studio bookkeeping (schema history, procedure deployments); managed by the service.';
REVOKE ALL ON SCHEMA tcstudio FROM PUBLIC;

CREATE TABLE tcstudio.tcstudio_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL CHECK (duration_ms >= 0)
);

-- One row per deployment still in effect; the newest row of a procedure is what the environment runs.
CREATE TABLE tcstudio.procedure_deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    procedure text NOT NULL,
    checksum char(64) NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now(),
    deployed_by text NOT NULL,
    previous_definition text
);
