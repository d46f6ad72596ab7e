-- Per experiment and trace name (the root span's name, e.g. the app's entry point): how
-- many traces, the share that ended in ERROR, latency p50/p95 (execution_duration_ms),
-- tokens and cost (USD).
with

final as (
    select
        traces.experiment_id,
        experiments.name as experiment_name,
        traces.trace_name,
        count(*) as traces,
        count(*) filter (where traces.state = 'ERROR') as errors,
        count(*) filter (where traces.state = 'ERROR') / count(*) as error_rate,
        quantile_cont(traces.execution_duration_ms, 0.5) as latency_p50_ms,
        quantile_cont(traces.execution_duration_ms, 0.95) as latency_p95_ms,
        sum(traces.total_tokens) as total_tokens,
        sum(traces.total_cost) as total_cost
    from traces
    left join experiments on experiments.experiment_id = traces.experiment_id
    group by traces.experiment_id, experiments.name, traces.trace_name
)

select * from final
order by experiment_name, experiment_id, trace_name
