-- Active runs of active experiments, as mlflow.search_runs(search_all_experiments=True)
-- returns them by default: the run set every report view counts.
with

final as (
    select *
    from run_overview
    where lifecycle_stage = 'active' and experiment_lifecycle_stage = 'active'
)

select * from final
