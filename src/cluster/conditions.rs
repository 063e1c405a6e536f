//! Readiness of the objects we wait for, as pure functions of their status.
//!
//! kube-rs's ready-made conditions do not fit: `is_pod_running` ignores readiness, and
//! `is_job_completed` never returns for a failed Job. These look at the same fields
//! `kubectl rollout status` / `kubectl wait` do.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::wait::Progress;

fn condition_true<'a>(mut conditions: impl Iterator<Item = (&'a str, &'a str)>, kind: &str) -> bool {
    conditions.any(|(t, s)| t == kind && s == "True")
}

/// Phase Running and condition Ready=True (all containers started and passing readiness probes).
pub fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && condition_true(status.conditions.iter().flatten().map(|c| (c.type_.as_str(), c.status.as_str())), "Ready")
}

/// A one-line description of why a pod is not ready: phase plus the first waiting/terminated
/// container reason (CrashLoopBackOff, ImagePullBackOff, ...).
pub fn pod_state(pod: &Pod) -> String {
    let Some(status) = &pod.status else { return "no status yet".into() };
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    let mut out = phase.to_owned();
    if phase == "Running" && !pod_ready(pod) {
        out.push_str(", not ready");
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(state) = &cs.state {
            if let Some(w) = &state.waiting {
                out.push_str(&format!(", {}: {}", cs.name, w.reason.as_deref().unwrap_or("waiting")));
            } else if let Some(t) = &state.terminated {
                out.push_str(&format!(", {}: {} (exit {})", cs.name, t.reason.as_deref().unwrap_or("terminated"), t.exit_code));
            }
        }
    }
    out
}

/// Ready=True, or why not (the Ready condition's reason and message).
pub fn node_ready(node: &Node) -> Result<(), String> {
    let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "Ready={} ({}{})",
            c.status,
            c.reason.as_deref().unwrap_or("no reason"),
            c.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )),
        None => Err("no Ready condition reported yet".into()),
    }
}

/// All replicas of the current generation ready. A Pending PVC is deliberately not consulted:
/// with local-path's WaitForFirstConsumer it binds only once the pod is scheduled.
pub fn statefulset(sts: &StatefulSet) -> Progress<()> {
    let want = sts.spec.replicas.unwrap_or(1);
    let generation = sts.metadata.generation.unwrap_or(0);
    let Some(status) = &sts.status else { return Progress::Pending("no status yet".into()) };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Pending(format!("controller has not seen generation {generation} yet"));
    }
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if ready >= want && updated >= want {
        Progress::Done(())
    } else {
        Progress::Pending(format!("{ready}/{want} ready, {updated}/{want} updated"))
    }
}

/// Rolled out: the current generation observed, every replica updated and available. A rollout
/// past its progress deadline fails now rather than at our timeout.
pub fn deployment(dep: &Deployment) -> Progress<()> {
    let want = dep.spec.replicas.unwrap_or(1);
    let generation = dep.metadata.generation.unwrap_or(0);
    let Some(status) = &dep.status else { return Progress::Pending("no status yet".into()) };
    if let Some(c) =
        status.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False"))
    {
        return Progress::Failed(format!("{}: {}", c.reason.as_deref().unwrap_or("not progressing"), c.message.as_deref().unwrap_or("")));
    }
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Pending(format!("controller has not seen generation {generation} yet"));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated >= want && available >= want && total <= want {
        Progress::Done(())
    } else {
        Progress::Pending(format!("{available}/{want} available, {updated}/{want} updated, {total} total"))
    }
}

/// Complete, or failed for good (Failed / FailureTarget condition): a failed Job stops the wait.
pub fn job(job: &Job) -> Progress<()> {
    let Some(status) = &job.status else { return Progress::Pending("no status yet".into()) };
    for c in status.conditions.iter().flatten().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return Progress::Done(()),
            "Failed" | "FailureTarget" => {
                return Progress::Failed(format!("{}: {}", c.reason.as_deref().unwrap_or("Failed"), c.message.as_deref().unwrap_or("")));
            }
            _ => {}
        }
    }
    Progress::Pending(format!(
        "{} active, {} succeeded, {} failed",
        status.active.unwrap_or(0),
        status.succeeded.unwrap_or(0),
        status.failed.unwrap_or(0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn running_is_not_ready() {
        let pod: Pod = from(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "coredns", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
              "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}));
        assert!(!pod_ready(&pod));
        assert_eq!(pod_state(&pod), "Running, not ready, coredns: CrashLoopBackOff");
        let pod: Pod = from(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(pod_ready(&pod));
    }

    #[test]
    fn node_not_ready_says_why() {
        let node: Node = from(json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
            "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]}}));
        assert_eq!(node_ready(&node).unwrap_err(), "Ready=Unknown (NodeStatusUnknown: Kubelet stopped posting node status.)");
    }

    #[test]
    fn statefulset_waits_for_observed_generation_and_ready_replicas() {
        let sts: StatefulSet = from(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "kafka-headless"},
            "status": {"replicas": 1, "observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}}),
        );
        assert!(matches!(statefulset(&sts), Progress::Pending(_)));
        let sts: StatefulSet = from(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "kafka-headless"},
            "status": {"replicas": 1, "observedGeneration": 2, "readyReplicas": 0, "updatedReplicas": 1}}),
        );
        assert_eq!(statefulset(&sts), Progress::Pending("0/1 ready, 1/1 updated".into()));
        let sts: StatefulSet = from(
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 1, "selector": {}, "template": {}, "serviceName": "kafka-headless"},
            "status": {"replicas": 1, "observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}),
        );
        assert_eq!(statefulset(&sts), Progress::Done(()));
    }

    #[test]
    fn deployment_past_its_deadline_fails() {
        let dep: Deployment = from(json!({"metadata": {"generation": 1}, "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing."}]}}));
        assert_eq!(deployment(&dep), Progress::Failed("ProgressDeadlineExceeded: ReplicaSet has timed out progressing.".into()));
        let dep: Deployment = from(json!({"metadata": {"generation": 1}, "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}}));
        assert!(matches!(deployment(&dep), Progress::Pending(_)), "an old replica still running");
    }

    #[test]
    fn failed_job_fails_fast() {
        let j: Job = from(
            json!({"status": {"failed": 7, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}),
        );
        assert_eq!(job(&j), Progress::Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into()));
        let j: Job = from(json!({"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}));
        assert_eq!(job(&j), Progress::Done(()));
        let j: Job = from(json!({"status": {"active": 1}}));
        assert_eq!(job(&j), Progress::Pending("1 active, 0 succeeded, 0 failed".into()));
    }
}
