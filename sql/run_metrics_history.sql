-- Databricks' system.mlflow.run_metrics_history, in its column names and types: every
-- point of metric_history (filled by `runreport extract --metric-history`; empty without
-- it). account_id, insert_time, record_id and workspace_id have no OSS counterpart and
-- are NULL; experiment_id comes from the point's run.
with

final as (
    select
        cast(null as varchar) as account_id,
        cast(null as timestamptz) as insert_time,
        cast(null as varchar) as record_id,
        cast(null as varchar) as workspace_id,
        runs.experiment_id,
        metric_history.run_id,
        metric_history.key as metric_name,
        metric_history.timestamp as metric_time,
        metric_history.step as metric_step,
        metric_history.value as metric_value
    from metric_history
    left join runs on runs.run_id = metric_history.run_id
)

select * from final
