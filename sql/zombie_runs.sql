-- Active runs still RUNNING longer than runreport_settings.zombie_after_hours after they
-- started: most were killed without MLflow hearing of it. Oldest first.
with

settings as (
    select zombie_after_hours from runreport_settings
),

running_runs as (
    select
        run_id,
        experiment_name,
        run_name,
        user_id,
        start_time,
        (epoch(now()) - epoch(start_time)) / 3600 as hours_running
    from run_overview
    where
        lifecycle_stage = 'active'
        and experiment_lifecycle_stage = 'active'
        and status = 'RUNNING'
),

final as (
    select running_runs.*
    from running_runs
    cross join settings
    where running_runs.hours_running > settings.zombie_after_hours
)

select * from final
order by start_time, run_id
