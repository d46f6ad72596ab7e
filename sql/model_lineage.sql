-- Each model version back to where it came from: who registered it and its run link, the
-- logged model it was registered from, the run that produced it (the version's run, else
-- the logged model's source run) with the datasets that run logged as inputs, and the
-- metrics logged against the logged model (an evaluation: log_metric(..., model_id=...)),
-- with the run and dataset each was measured in. One row per version and metric point; a
-- version with none has one row, its metric columns NULL. workspace: the version's MLflow
-- workspace (names repeat across workspaces).
with

source_datasets as (
    select
        run_id,
        string_agg(
            dataset_name || '@' || dataset_digest || coalesce(' (' || context || ')', ''),
            ', '
            order by dataset_name, dataset_digest, context
        ) as datasets
    from run_inputs
    group by run_id
),

versions as (
    select
        model_versions.name,
        model_versions.version,
        model_versions.creation_time as registered_at,
        model_versions.user_id as registered_by,
        model_versions.run_link,
        model_versions.model_id,
        logged_models.name as logged_model_name,
        coalesce(model_versions.run_id, logged_models.source_run_id) as source_run_id,
        logged_models.experiment_id as model_experiment_id,
        model_versions.workspace
    from model_versions
    left join logged_models on logged_models.model_id = model_versions.model_id
),

final as (
    select
        versions.name,
        versions.version,
        versions.registered_at,
        versions.registered_by,
        versions.run_link,
        versions.model_id,
        versions.logged_model_name,
        versions.source_run_id,
        runs.run_name as source_run_name,
        coalesce(runs.experiment_id, versions.model_experiment_id) as experiment_id,
        experiments.name as experiment_name,
        source_datasets.datasets as source_run_datasets,
        logged_model_metrics.key as metric_key,
        logged_model_metrics.value as metric_value,
        logged_model_metrics.step as metric_step,
        logged_model_metrics.run_id as metric_run_id,
        logged_model_metrics.dataset_name as metric_dataset_name,
        logged_model_metrics.dataset_digest as metric_dataset_digest,
        versions.workspace
    from versions
    left join runs on runs.run_id = versions.source_run_id
    left join experiments
        on experiments.experiment_id = coalesce(runs.experiment_id, versions.model_experiment_id)
    left join source_datasets on source_datasets.run_id = versions.source_run_id
    left join logged_model_metrics on logged_model_metrics.model_id = versions.model_id
)

select * from final
order by
    registered_at desc,
    name,
    try_cast(version as bigint) desc,
    workspace,
    metric_key,
    metric_run_id,
    metric_step
