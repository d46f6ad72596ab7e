-- Traces per day (in the settings time zone) per experiment: how many, the share that
-- ended in ERROR, latency p50/p95 (execution_duration_ms) and tokens used.
with

settings as (
    select timezone from runreport_settings
),

dated_traces as (
    select
        traces.experiment_id,
        cast(traces.request_time at time zone settings.timezone as date) as request_date,
        traces.state,
        traces.execution_duration_ms,
        traces.total_tokens
    from traces
    cross join settings
),

final as (
    select
        dated_traces.request_date,
        dated_traces.experiment_id,
        experiments.name as experiment_name,
        count(*) as traces,
        count(*) filter (where dated_traces.state = 'ERROR') as errors,
        count(*) filter (where dated_traces.state = 'ERROR') / count(*) as error_rate,
        quantile_cont(dated_traces.execution_duration_ms, 0.5) as latency_p50_ms,
        quantile_cont(dated_traces.execution_duration_ms, 0.95) as latency_p95_ms,
        sum(dated_traces.total_tokens) as total_tokens
    from dated_traces
    left join experiments on experiments.experiment_id = dated_traces.experiment_id
    group by dated_traces.request_date, dated_traces.experiment_id, experiments.name
)

select * from final
order by request_date desc, experiment_name, experiment_id
