-- GET .../procedures/{name} reads the newest deployment of one procedure in every environment.
CREATE INDEX ix_procedure_deployments_procedure ON tcstudio.procedure_deployments ([procedure], id DESC);
