-- Per experiment and assessment name: how many assessments, and the share that passed.
-- A value passes when it is true, yes or pass and fails when it is false, no or fail
-- (any case); other values (scores, text) count in assessments but not in pass_rate.
with

judged as (
    select
        traces.experiment_id,
        trace_assessments.name,
        trace_assessments.source_type,
        case
            when lower(trim(trace_assessments.value, '" ')) in ('true', 'yes', 'pass') then true
            when lower(trim(trace_assessments.value, '" ')) in ('false', 'no', 'fail') then false
        end as passed
    from trace_assessments
    inner join traces on traces.trace_id = trace_assessments.trace_id
),

final as (
    select
        judged.experiment_id,
        experiments.name as experiment_name,
        judged.name as assessment_name,
        count(*) as assessments,
        count(passed) as judged,
        count(*) filter (where passed) as passed,
        count(*) filter (where passed) / nullif(count(passed), 0) as pass_rate,
        string_agg(distinct judged.source_type, ', ' order by judged.source_type) as source_types
    from judged
    left join experiments on experiments.experiment_id = judged.experiment_id
    group by judged.experiment_id, experiments.name, judged.name
)

select * from final
order by experiment_name, experiment_id, assessment_name
