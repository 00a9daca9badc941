"""Tag names the registry writes, in one place so CLI, UI links and tests agree."""

# On each model version: its lineage and its gate result.
DATASET_VERSION = "modelyard.dataset.version"
DATASET_HASH = "modelyard.dataset.hash"
SNAPSHOT = "modelyard.snapshot"  # id of the training snapshot (see modelyard.tasks.snapshots)
SNAPSHOT_VERSIONS = "modelyard.snapshot.versions"  # JSON list of its dataset versions, in order
BASE_MODEL = "modelyard.base_model"
BASE_REVISION = "modelyard.base_revision"
CONFIG_HASH = "modelyard.trainer.config_hash"
GIT_SHA = "modelyard.git_sha"
SUITE_VERSION = "modelyard.suite_version"
METRICS = "modelyard.metrics"  # JSON scores on SUITE_VERSION
SCORES_PREFIX = "modelyard.scores."  # + suite version: JSON scores on that suite (re-scores too)
GATE_DECISION = "modelyard.gate.decision"  # "passed" | "failed"
GATE_FAILED = "modelyard.gate.failed"  # comma-separated failed check names
GATE_MARGINS = "modelyard.gate.margins"  # JSON {check name: margin}, positive = passed with room
GATE_INCUMBENT = "modelyard.gate.incumbent"  # JSON {label, version, metrics} it was compared with
GATE_REPORT = "modelyard.gate.report"  # artifact URI of the JSON gate report
DAG_ID = "modelyard.airflow.dag_id"
DAG_RUN_ID = "modelyard.airflow.run_id"
MLFLOW_RUN_ID = "modelyard.mlflow_run_id"
ROLLED_BACK = "modelyard.rolled_back"  # set on a version production was rolled back from
CANARY_VERDICT = "modelyard.canary.verdict"  # "failed": a canary analysis rolled it back
CANARY_ANALYSIS = "modelyard.canary.analysis"  # JSON summary of its latest canary analysis
CANARY_SINCE = "modelyard.canary.since"  # window start, when no ledger entry says it

# On the registered model.
GATE = "modelyard.gate"  # JSON override of GateSettings for this model
LEDGER_PREFIX = "modelyard.ledger."  # + zero-padded sequence: one JSON ledger entry each
PREVIOUS_PRODUCTION = "modelyard.previous_production"

STAGES = ("staging", "canary", "production")


def scores_tag(suite_version: str) -> str:
    return SCORES_PREFIX + suite_version
