-- Databricks' system.mlflow.experiments_latest, in its column names and types, one row per
-- experiment, deleted ones too. account_id and workspace_id have no OSS counterpart and are
-- NULL. create_time is MLflow's creation_time, update_time its last_update_time, and
-- delete_time the last_update_time of a deleted experiment (MLflow stamps it on delete).
with

final as (
    select
        cast(null as varchar) as account_id,
        last_update_time as update_time,
        case when lifecycle_stage = 'deleted' then last_update_time end as delete_time,
        experiment_id,
        cast(null as varchar) as workspace_id,
        name,
        creation_time as create_time
    from experiments
)

select * from final
