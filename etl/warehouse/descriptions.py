"""What each table and view of the warehouse holds, in one sentence each: the sentences of
docs/contract.md (tests/unit/test_descriptions.py holds the two equal), for
`runreport sql --schema`, which cannot read the contract page at run time.

A table or view added to the contract gets its sentence here too; the settings tables
share one (their list is etl/warehouse/settings.py's SETTINGS_TABLES).
"""

from __future__ import annotations

from etl.warehouse.settings import SETTINGS_TABLES

SETTINGS_SENTENCE = "settings the views read"

TABLES: dict[str, str] = {
    "experiments": "every experiment, deleted ones too",
    "experiment_tags": "the tags of each experiment",
    "runs": "every run, deleted ones and those of deleted experiments too",
    "params": "the params of each run",
    "metrics": "the latest value of each key, as `search_runs` returns it",
    "tags": "the tags of each run",
    "metric_history": "every logged point, when asked for",
    "datasets": "each dataset a run logged as an input",
    "run_inputs": "the datasets each run logged as inputs, with their context",
    "run_outputs": "the logged models each run output",
    "run_model_inputs": (
        "the logged models each run took as input (evaluated: `log_metric(..., model_id=...)`, "
        "`mlflow.genai.evaluate`)"
    ),
    "logged_models": "MLflow 3's logged models",
    "logged_model_params": "the params of each logged model",
    "logged_model_tags": "the tags of each logged model",
    "logged_model_metrics": "the metrics of each logged model",
    "registered_models": "the model registry's models",
    "registered_model_tags": "the tags of each registered model",
    "model_versions": (
        "every version of each registered model, with who registered it and its run link"
    ),
    "model_version_tags": "the tags of each model version",
    "model_aliases": "the version each alias points at now",
    "prompts": "the prompt registry's prompts, as `search_prompts` lists them",
    "prompt_tags": (
        "the tags of each prompt (MLflow's link to the experiments using it, "
        "`_mlflow_experiment_ids`, too)"
    ),
    "prompt_versions": (
        "every version of each prompt with its template text (a chat template as the JSON "
        "MLflow stores)"
    ),
    "prompt_aliases": "the version each prompt alias points at now",
    "traces": (
        "each GenAI trace: when, how long, its state, name, session, user, logged model, "
        "tokens and cost (USD, as MLflow prices them)"
    ),
    "trace_assessments": (
        "the assessments (feedback, expectations, issue references) of each trace, an "
        "overridden feedback too (valid false)"
    ),
    "trace_tags": "the tags of each trace",
    "trace_runs": (
        "every run each trace belongs to: the run it was logged in and the runs it was "
        "linked to (`link_traces_to_run`, `mlflow.genai.evaluate`)"
    ),
    "trace_model_usage": (
        "per trace and model: the LLM calls its spans made, their tokens and cost (span "
        "contents are not kept)"
    ),
    "issues": (
        "the quality or operational problems MLflow detected in traces (`search_issues`), "
        "with how many traces reference each"
    ),
    "evaluation_datasets": (
        "MLflow's GenAI evaluation datasets (`search_datasets`): digest, how many records, "
        "created and last updated, when and by whom (the records' contents are not kept)"
    ),
    "evaluation_dataset_tags": "the tags of each evaluation dataset",
    "evaluation_dataset_experiments": "the experiments each evaluation dataset is linked to",
    "model_alias_history": (
        "each alias change an extract saw, of a model or a prompt (kind) in a workspace, kept "
        "across full rebuilds"
    ),
    "extract_log": "one row per extract, kept across full rebuilds",
    "alerts": "one row per alert and channel: what was sent, is pending or failed; kept "
    "across full rebuilds",
    "alert_rule_state": "each alert rule's baseline (its first evaluation alerts nothing "
    "before it), kept across full rebuilds",
    "runreport_meta": (
        "`schema_version`; a warehouse of another version gets a full extract; "
        "`extract_notice`: each warning line of the extract that wrote it (what it left "
        "out), listed by the report under Needs attention"
    ),
}

VIEWS: dict[str, str] = {
    "active_runs": "active runs of active experiments",
    "run_overview": (
        "one row per run: run_id, experiment_id, experiment_name, run_name, status, user_id, "
        "start_time, end_time, start_date, duration_seconds, lifecycle_stage, parent_run_id, "
        "root_run_id, depth, child_count, is_nested_parent, is_nested_child, estimator_name, "
        "estimator_class, experiment_lifecycle_stage, source_type, workspace (its "
        "experiment's MLflow workspace)"
    ),
    "runs_per_day": (
        "active runs started each day (in `report.timezone`), by status, per MLflow workspace"
    ),
    "runs_per_estimator": (
        "active runs per estimator: the `estimator_name` tag sklearn autolog writes, or what "
        "`report.estimator_from` names (a tag or param key, or `run_name`), per MLflow "
        "workspace"
    ),
    "runs_by_status": "active runs per status and MLflow workspace",
    "runs_per_user": (
        "active runs per user: the tag `report.user_tag` names where a run carries it, else "
        "MLflow's user_id, per MLflow workspace"
    ),
    "failed_runs": "active runs that ended FAILED or KILLED, newest first",
    "stuck_runs": (
        "active runs still RUNNING longer than `report.zombie_after_hours` after they "
        "started, each a 'zombie' or a 'parent left open'"
    ),
    "zombie_runs": (
        "the stuck runs that are no parent left open, outside the experiments "
        "`report.zombie_ignore` names"
    ),
    "parents_left_open": (
        "nested parents still RUNNING although all their children ended, outside the "
        "experiments `report.zombie_ignore` names"
    ),
    "experiment_primary_metric": (
        "one row per experiment with a metric: experiment_id, experiment_name, metric_key, "
        "greater_is_better, source ('config', 'tag' or 'rule'), leaderboard_runs ('root', "
        "'all' or 'children': which runs its leaderboard ranks), child_metric_key, "
        "child_greater_is_better, child_source (the metric its nested searches rank children "
        "by)"
    ),
    "ranked_runs": (
        "every run a leaderboard ranks (root runs by default), with its value and rank, its "
        "params but the seed keys (`params`) and its group's runs, mean and std"
    ),
    "leaderboard": (
        "the best of `ranked_runs` per experiment, with `leaderboard_runs`, `group_runs`, "
        "`group_mean`, `group_std` (its configuration over its seeds)"
    ),
    "leaderboard_groups": (
        "the ranked runs grouped by their params but the seed keys (`seed`, `random_state`, "
        "`random_seed`, `[metrics] seed_params`): experiment_id, experiment_name, "
        "metric_key, greater_is_better, params, runs, mean_value, std_value, min_value, "
        "max_value, best_run_id, best_run_name, group_rank"
    ),
    "unranked_experiments": "active experiments with runs but no leaderboard row, with the reason",
    "nested_searches": (
        "active runs with active child runs: how many, and the best child on the child metric"
    ),
    "metric_key_directions": (
        "one row per metric key the warehouse knows (logged by a run or a logged model, or "
        "named as a primary or child metric): metric_key, greater_is_better (NULL when "
        "neither the built-in rule nor `[metrics]` knows the key), is_training "
        "(`train`/`training` is a word of the key), metric_kind (the key without its train, "
        "val, test, ... word and `_score`)"
    ),
    "metric_values": "each run's latest metric values, with is_finite (false for NaN and ±inf)",
    "metric_summary": (
        "per experiment and metric key: min, mean, max and the latest value over its active runs"
    ),
    "recent_runs": "active runs, newest first, with the experiment's primary metric",
    "duplicate_run_names": "run names used by more than one active run of the same experiment",
    "metric_curves": (
        "one row per run and key of `metric_history`: points, axis ('step', or 'order' when "
        "the run's steps do not vary), first and last x, best value and its x, last value, "
        "still improving"
    ),
    "runs_per_dataset": (
        "each dataset the active runs logged as an input: runs, experiments, contexts, first "
        "and last use"
    ),
    "model_versions_registered": (
        "every model version, newest first, with its run, logged model and current aliases"
    ),
    "model_lineage": (
        "each model version back to its logged model, source run, that run's datasets and "
        "the metrics logged against the model (one row per version and metric point)"
    ),
    "alias_moves": "every alias change an extract saw, of models and prompts (kind), newest first",
    "best_logged_model": (
        "the best logged model of each experiment, on the leaderboard's metric, else on the "
        "models' own keys by the naming rule (source 'models')"
    ),
    "traces_per_day": (
        "traces per day and experiment: how many, errors, latency p50 and p95, tokens"
    ),
    "assessment_pass_rates": (
        "per experiment and feedback name: how many valid feedbacks, and the share that "
        "passed, as MLflow counts them (overridden feedback and expectations left out)"
    ),
    "assessment_expectations": (
        "per experiment and expectation name: the ground truth logged on traces"
    ),
    "genai_cost_per_day": (
        "per day, experiment and model: LLM calls, tokens, cost (USD) and traces"
    ),
    "genai_usage_per_user": (
        "per experiment and app user: traces, sessions, errors, tokens and cost"
    ),
    "genai_sessions": (
        "one row per session: its users, traces, errors, tokens, cost, first and last request"
    ),
    "traces_by_name": (
        "per experiment and trace name: how many, errors, latency p50 and p95, tokens, cost"
    ),
    "experiments_latest": (
        "every experiment in the shape of Databricks' system.mlflow.experiments_latest; "
        "account_id, workspace_id and delete_time are NULL (no OSS counterpart)"
    ),
    "runs_latest": (
        "every run in the shape of Databricks' system.mlflow.runs_latest: params and tags as "
        "maps, metrics aggregated (latest, min, max); account_id, workspace_id, update_time "
        "and delete_time are NULL"
    ),
    "run_metrics_history": (
        "every metric history point in the shape of Databricks' "
        "system.mlflow.run_metrics_history; account_id, workspace_id, insert_time and "
        "record_id are NULL"
    ),
    "runs_wide": (
        "what `mlflow.search_runs(search_all_experiments=True)` returns, one column per "
        "metric, param and tag key the warehouse holds (written by the extract)"
    ),
    "runs_wide_all": "`runs_wide` for every run, deleted ones too",
}


def description(name: str) -> str:
    """The contract's sentence for a table or view (backticks dropped); "" for one it
    does not name."""
    if name in SETTINGS_TABLES:
        return SETTINGS_SENTENCE
    return {**TABLES, **VIEWS}.get(name, "").replace("`", "")
