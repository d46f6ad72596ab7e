-- Nested parents still RUNNING long after they started although every child run has
-- ended (see stuck_runs): the parent was never closed. Outside the experiments
-- zombie_ignore names, as zombie_runs. Oldest first.
with

final as (
    select
        run_id,
        experiment_name,
        run_name,
        user_id,
        start_time,
        hours_running,
        child_count,
        last_child_end,
        experiment_id
    from stuck_runs
    where kind = 'parent left open' and not is_ignored
)

select * from final
order by start_time, run_id
