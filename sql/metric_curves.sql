-- One row per run and metric key of metric_history (filled by `runreport extract
-- --metric-history`): how many points, the curve's axis, its first and last x, the best
-- finite value and the x it was first reached at, the last value (at the greatest x,
-- then the latest timestamp, as MLflow picks a run's latest value), and still_improving.
-- Axis: 'step' (x is the point's step), or 'order' when the run's steps for the key do
-- not vary (two points or more, all at one step: `log_metric(key, value)` in a loop
-- without `step` logs every point at step 0); x is then the point's position in logged
-- order, from 1: by timestamp, then value (points logged in the same millisecond have no
-- other order). first_step, last_step and best_step are x on the curve's axis.
-- Direction: the experiment's primary metric direction for its primary key
-- (experiment_primary_metric), else the key's direction (metric_key_directions); NULL
-- when neither knows the key, and then best_value, best_step and still_improving are
-- NULL too.
-- still_improving rule: true when the best finite value was first reached in the last
-- 10% of the curve's x range (best_step >= last_step - (last_step - first_step) / 10),
-- i.e. the curve was still reaching new bests at the end; NULL with fewer than 3 points
-- or fewer than 3 finite points (such a curve is not drawn). NaN and ±inf (stored as
-- ±1.7976931348623157e308) never count as best.
with

history as (
    select
        metric_history.run_id,
        runs.experiment_id,
        metric_history.key,
        metric_history.value,
        metric_history.step,
        metric_history.timestamp,
        not isnan(metric_history.value)
            and metric_history.value < 1.7976931348623157e308
            and metric_history.value > -1.7976931348623157e308 as is_finite
    from metric_history
    inner join runs on runs.run_id = metric_history.run_id
),

spread as (
    select
        history.*,
        count(*) over (partition by history.run_id, history.key) > 1
            and min(history.step) over (partition by history.run_id, history.key)
            = max(history.step) over (partition by history.run_id, history.key)
            as steps_fixed,
        row_number() over (
            partition by history.run_id, history.key
            order by history.timestamp, history.value
        ) as position
    from history
),

located as (
    select
        spread.*,
        case when steps_fixed then 'order' else 'step' end as axis,
        case when steps_fixed then position else step end as x
    from spread
),

curve_keys as (
    select distinct experiment_id, key from history
),

directions as (
    select
        curve_keys.experiment_id,
        curve_keys.key,
        coalesce(
            experiment_primary_metric.greater_is_better, metric_key_directions.greater_is_better
        ) as greater_is_better
    from curve_keys
    left join experiment_primary_metric
        on experiment_primary_metric.experiment_id = curve_keys.experiment_id
        and experiment_primary_metric.metric_key = curve_keys.key
    left join metric_key_directions on metric_key_directions.metric_key = curve_keys.key
),

ranked as (
    select
        located.*,
        directions.greater_is_better,
        row_number() over (
            partition by located.run_id, located.key
            order by located.x desc, located.timestamp desc, located.value desc
        ) as from_last,
        case
            when located.is_finite and directions.greater_is_better is not null
                then row_number() over (
                    partition by located.run_id, located.key, located.is_finite
                    order by
                        case
                            when directions.greater_is_better then -located.value
                            else located.value
                        end,
                        located.x,
                        located.timestamp
                )
        end as best_rank
    from located
    inner join directions
        on directions.experiment_id = located.experiment_id
        and directions.key = located.key
),

curves as (
    select
        run_id,
        experiment_id,
        key,
        greater_is_better,
        axis,
        count(*) as points,
        count(*) filter (where is_finite) as finite_points,
        min(x) as first_step,
        max(x) as last_step,
        max(value) filter (where best_rank = 1) as best_value,
        max(x) filter (where best_rank = 1) as best_step,
        max(value) filter (where from_last = 1) as last_value
    from ranked
    group by run_id, experiment_id, key, greater_is_better, axis
),

final as (
    select
        run_id,
        experiment_id,
        key,
        greater_is_better,
        points,
        finite_points,
        axis,
        first_step,
        last_step,
        best_value,
        best_step,
        last_value,
        case
            when best_step is null or points < 3 or finite_points < 3 then null
            else best_step * 10 >= last_step * 10 - (last_step - first_step)
        end as still_improving
    from curves
)

select * from final
order by experiment_id, run_id, key
