-- Per experiment and app user (the trace's mlflow.trace.user; NULL when the app set
-- none): traces, sessions, errors, tokens and cost (USD), first and last request.
with

final as (
    select
        traces.experiment_id,
        experiments.name as experiment_name,
        traces.user,
        count(*) as traces,
        count(distinct traces.session_id) as sessions,
        count(*) filter (where traces.state = 'ERROR') as errors,
        sum(traces.total_tokens) as total_tokens,
        sum(traces.total_cost) as total_cost,
        min(traces.request_time) as first_request,
        max(traces.request_time) as last_request
    from traces
    left join experiments on experiments.experiment_id = traces.experiment_id
    group by traces.experiment_id, experiments.name, traces.user
)

select * from final
order by experiment_name, experiment_id, total_cost desc nulls last, traces desc, "user"
