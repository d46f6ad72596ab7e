-- Every model version, newest first, with the run and logged model it came from and the
-- aliases that point at it now, and its MLflow workspace (names repeat across workspaces).
-- The report keeps those registered in its window.
with

current_aliases as (
    select workspace, name, version, string_agg(alias, ', ' order by alias) as aliases
    from model_aliases
    group by workspace, name, version
),

final as (
    select
        model_versions.name,
        model_versions.version,
        model_versions.creation_time as registered_at,
        model_versions.status,
        model_versions.current_stage,
        current_aliases.aliases,
        model_versions.run_id,
        runs.run_name,
        experiments.name as experiment_name,
        model_versions.model_id,
        logged_models.name as logged_model_name,
        model_versions.source,
        coalesce(runs.experiment_id, logged_models.experiment_id) as experiment_id,
        model_versions.workspace
    from model_versions
    left join current_aliases
        on current_aliases.workspace = model_versions.workspace
        and current_aliases.name = model_versions.name
        and current_aliases.version = model_versions.version
    left join runs on runs.run_id = model_versions.run_id
    left join logged_models on logged_models.model_id = model_versions.model_id
    left join experiments
        on experiments.experiment_id = coalesce(runs.experiment_id, logged_models.experiment_id)
)

select * from final
order by registered_at desc, name, try_cast(version as bigint) desc, workspace
