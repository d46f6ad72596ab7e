-- Per experiment and feedback name: how many valid feedbacks, and the share that passed,
-- as MLflow's trace-metrics aggregation counts them: only valid feedback (a judge's
-- feedback a human overrode with mlflow.override_feedback is kept with valid = false and
-- left out here), never expectations (ground truth: assessment_expectations).
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
    where trace_assessments.assessment_type = 'feedback'
        and trace_assessments.valid is not false
),

overridden as (
    select
        traces.experiment_id,
        trace_assessments.name,
        count(*) as overridden
    from trace_assessments
    inner join traces on traces.trace_id = trace_assessments.trace_id
    where trace_assessments.assessment_type = 'feedback'
        and trace_assessments.valid is false
    group by traces.experiment_id, trace_assessments.name
),

final as (
    select
        judged.experiment_id,
        experiments.name as experiment_name,
        judged.name as assessment_name,
        count(*) as assessments,
        count(judged.passed) as judged,
        count(*) filter (where judged.passed) as passed,
        count(*) filter (where judged.passed) / nullif(count(judged.passed), 0) as pass_rate,
        string_agg(distinct judged.source_type, ', ' order by judged.source_type)
            as source_types,
        coalesce(max(overridden.overridden), 0) as overridden
    from judged
    left join experiments on experiments.experiment_id = judged.experiment_id
    left join overridden
        on overridden.experiment_id = judged.experiment_id
        and overridden.name = judged.name
    group by judged.experiment_id, experiments.name, judged.name
)

select * from final
order by experiment_name, experiment_id, assessment_name
