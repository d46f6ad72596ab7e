-- Each run's latest metric values with is_finite: false for NaN, +inf and -inf. MLflow's
-- SQL stores save ±inf as ±1.7976931348623157e308, the largest double, so that value is
-- not finite either. NaN and infinite values never win a leaderboard or a search and stay
-- out of min, max and mean.
with

final as (
    select
        run_id,
        key,
        value,
        step,
        timestamp,
        not isnan(value)
            and value < 1.7976931348623157e308
            and value > -1.7976931348623157e308 as is_finite
    from metrics
)

select * from final
