-- Run names used by more than one active run of the same experiment.
with

named_runs as (
    select experiment_id, experiment_name, run_name, start_time
    from active_runs
    where run_name is not null
),

final as (
    select
        experiment_id,
        any_value(experiment_name) as experiment_name,
        run_name,
        count(*) as runs,
        min(start_time) as first_start,
        max(start_time) as last_start
    from named_runs
    group by experiment_id, run_name
    having count(*) > 1
)

select * from final
order by runs desc, experiment_name, run_name
