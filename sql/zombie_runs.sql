-- Runs still RUNNING long after they started (see stuck_runs) that are no nested parent
-- left open, outside the experiments zombie_ignore names: most were killed without
-- MLflow hearing of it. Oldest first.
with

final as (
    select
        run_id,
        experiment_name,
        run_name,
        user_id,
        start_time,
        hours_running,
        experiment_id
    from stuck_runs
    where kind = 'zombie' and not is_ignored
)

select * from final
order by start_time, run_id
