-- The runs each leaderboard ranks (ranked_runs) grouped by configuration: runs of one
-- experiment whose params are the same but for the seed keys (seed, random_state,
-- random_seed and [metrics] seed_params) are one group; a run that logged no param is a
-- group of its own (params NULL). runs, mean_value, std_value (the sample standard
-- deviation, NULL for one run), min_value and max_value of the metric over the group;
-- its best run as the leaderboard ranks it. group_rank: 1 for the best mean, ties to the
-- group holding the better run.
with

members as (
    select
        *,
        row_number() over (
            partition by experiment_id, coalesce(params, run_id)
            order by rank
        ) as place,
        min(value) over (partition by experiment_id, coalesce(params, run_id)) as min_value,
        max(value) over (partition by experiment_id, coalesce(params, run_id)) as max_value
    from ranked_runs
),

final as (
    select
        experiment_id,
        experiment_name,
        metric_key,
        greater_is_better,
        params,
        group_runs as runs,
        group_mean as mean_value,
        group_std as std_value,
        min_value,
        max_value,
        run_id as best_run_id,
        run_name as best_run_name,
        row_number() over (
            partition by experiment_id
            order by case when greater_is_better then -group_mean else group_mean end, rank
        ) as group_rank
    from members
    where place = 1
)

select * from final
order by experiment_name, experiment_id, group_rank
