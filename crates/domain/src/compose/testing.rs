//! Helpers the compose tests share: allowances by name, and a file of one service `web`
//! planned with settings of the test's choosing.

use super::{ComposeAllowances, ComposePermission, ComposeRefusal, StackService, plan_stack};

pub(super) fn allow(names: &[&str]) -> ComposeAllowances {
    ComposeAllowances::from_names(
        &names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )
}

pub(super) fn all_allowed() -> ComposeAllowances {
    allow(&ComposePermission::ALL.map(ComposePermission::name))
}

/// Plans a file of one service, `web`, whose settings are `settings` (indented under it),
/// with `extra` appended at the top level.
pub(super) fn web(
    settings: &str,
    extra: &str,
    allowances: &ComposeAllowances,
) -> Result<StackService, ComposeRefusal> {
    let text = format!("services:\n  web:\n    image: nginx:1.27\n{settings}{extra}");
    plan_stack(&text, &[], allowances, &[]).map(|mut plan| plan.services.remove(0))
}

pub(super) fn refusal(
    settings: &str,
    extra: &str,
    allowances: &ComposeAllowances,
) -> ComposeRefusal {
    match web(settings, extra, allowances) {
        Ok(service) => panic!("planned, expected a refusal:\n{settings}{extra}\n{service:?}"),
        Err(refusal) => {
            assert!(!refusal.to_string().contains('\n'), "{refusal}");
            refusal
        }
    }
}

pub(super) fn denied_permission(refusal: &ComposeRefusal) -> Option<ComposePermission> {
    match refusal {
        ComposeRefusal::NotAllowed { permission, .. } => Some(*permission),
        _ => None,
    }
}
