-- One row per session (the trace's mlflow.trace.session): its experiment, user(s),
-- traces, errors, tokens, cost (USD), its first and last request and the time between
-- them, newest first.
with

final as (
    select
        traces.experiment_id,
        experiments.name as experiment_name,
        traces.session_id,
        string_agg(distinct traces.user, ', ' order by traces.user) as users,
        count(*) as traces,
        count(*) filter (where traces.state = 'ERROR') as errors,
        sum(traces.total_tokens) as total_tokens,
        sum(traces.total_cost) as total_cost,
        min(traces.request_time) as first_request,
        max(traces.request_time) as last_request
    from traces
    left join experiments on experiments.experiment_id = traces.experiment_id
    where traces.session_id is not null
    group by traces.experiment_id, experiments.name, traces.session_id
)

select
    *,
    date_diff('millisecond', first_request, last_request) as duration_ms
from final
order by first_request desc, experiment_name, session_id
