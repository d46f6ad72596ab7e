-- Databricks' system.mlflow.runs_latest, in its column names and types, one row per run,
-- deleted runs too (as there). params and tags are maps of key to value (empty when the run
-- has none); aggregated_metrics is a list of {metric_name, latest_value, max_value,
-- min_value} sorted by metric_name: latest_value is MLflow's latest metric, max_value and
-- min_value come from the key's metric_history points (NULL when the history was not
-- extracted; NaN counts as the largest value, as in Spark and DuckDB). created_by is
-- MLflow's user_id. account_id and workspace_id have no OSS counterpart and are NULL;
-- update_time and delete_time are NULL too (the warehouse does not hold when a run was last
-- changed or deleted: filter deleted runs with `runs.lifecycle_stage`).
with

run_params as (
    select run_id, map_from_entries(list(struct_pack(
        k := cast(key as varchar), v := cast(value as varchar)
    ))) as params
    from params
    group by run_id
),

run_tags as (
    select run_id, map_from_entries(list(struct_pack(
        k := cast(key as varchar), v := cast(value as varchar)
    ))) as tags
    from tags
    group by run_id
),

history_range as (
    select run_id, key, max(value) as max_value, min(value) as min_value
    from metric_history
    group by run_id, key
),

run_metrics as (
    select
        metrics.run_id,
        -- typed fields: sqlglot writes a struct for Trino only when it knows their types
        list_sort(list(struct_pack(
            metric_name := cast(metrics.key as varchar),
            latest_value := cast(metrics.value as double),
            max_value := cast(history_range.max_value as double),
            min_value := cast(history_range.min_value as double)
        ))) as aggregated_metrics
    from metrics
    left join history_range
        on history_range.run_id = metrics.run_id and history_range.key = metrics.key
    group by metrics.run_id
),

final as (
    select
        cast(null as varchar) as account_id,
        cast(null as timestamptz) as update_time,
        cast(null as timestamptz) as delete_time,
        cast(null as varchar) as workspace_id,
        runs.run_id,
        runs.experiment_id,
        runs.user_id as created_by,
        runs.start_time,
        runs.end_time,
        runs.run_name,
        runs.status,
        coalesce(run_params.params, map()) as params,
        coalesce(run_tags.tags, map()) as tags,
        run_metrics.aggregated_metrics
    from runs
    left join run_params on run_params.run_id = runs.run_id
    left join run_tags on run_tags.run_id = runs.run_id
    left join run_metrics on run_metrics.run_id = runs.run_id
)

select * from final
