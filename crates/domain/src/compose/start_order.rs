//! The order a stack starts in: each service after the services it depends on, cycles refused
//! by name.

use std::collections::BTreeSet;

use super::refusal::invalid;
use super::{ComposeRefusal, ComposeSubject, StackService};
use crate::names::quote;

/// Orders services so each comes after its dependencies; among those ready at once, the file's
/// order wins.
pub(super) fn start_order(
    services: Vec<StackService>,
) -> Result<Vec<StackService>, ComposeRefusal> {
    let names: Vec<&str> = services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for service in &services {
        if let Some(unknown) = service
            .depends_on
            .iter()
            .find(|dependency| !names.contains(&dependency.as_str()))
        {
            return Err(invalid(
                &ComposeSubject::Service(service.name.clone()),
                "depends_on",
                format!("there is no service {} in the file", quote(unknown)),
            ));
        }
    }
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let mut order: Vec<usize> = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        let ready = services.iter().position(|service| {
            !started.contains(service.name.as_str())
                && service
                    .depends_on
                    .iter()
                    .all(|dependency| started.contains(dependency.as_str()))
        });
        match ready {
            Some(index) => {
                started.insert(services[index].name.as_str());
                order.push(index);
            }
            None => return Err(cycle(&services, &started)),
        }
    }
    let mut slots: Vec<Option<StackService>> = services.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|index| slots[index].take())
        .collect())
}

/// Names a cycle among the services not started: each waits on another one not started, so
/// following the first such dependency from any of them comes back round.
fn cycle(services: &[StackService], started: &BTreeSet<&str>) -> ComposeRefusal {
    let waiting = |name: &str| -> Option<&str> {
        let service = services.iter().find(|service| service.name == name)?;
        service
            .depends_on
            .iter()
            .map(String::as_str)
            .find(|dependency| !started.contains(dependency))
    };
    let first = services
        .iter()
        .find(|service| !started.contains(service.name.as_str()))
        .map_or("", |service| service.name.as_str());
    let mut path: Vec<&str> = vec![first];
    while let Some(next) = waiting(path[path.len() - 1]) {
        if let Some(at) = path.iter().position(|name| *name == next) {
            let mut cycle: Vec<String> = path[at..].iter().map(|name| (*name).to_owned()).collect();
            cycle.push(next.to_owned());
            return ComposeRefusal::Cycle {
                service: next.to_owned(),
                cycle,
            };
        }
        path.push(next);
    }
    unreachable!("a service that is not started waits on another that is not")
}

#[cfg(test)]
mod tests {
    use crate::compose::*;

    #[test]
    fn start_order_follows_dependencies_and_otherwise_the_file() {
        let text = "services:\n  a:\n    image: x\n    depends_on: [d]\n  b:\n    image: x\n  c:\n    image: x\n    depends_on: [a, b]\n  d:\n    image: x\n";
        let plan = plan_stack(text, &[], &ComposeAllowances::default(), &[]).unwrap();
        let names: Vec<&str> = plan
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
    }

    #[test]
    fn dependency_cycles_are_refused_by_name() {
        for (text, message) in [
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n",
                "compose service \"a\" depends on itself through depends_on: a → b → c → a",
            ),
            (
                "services:\n  free:\n    image: x\n  a:\n    image: x\n    depends_on: [a]\n",
                "compose service \"a\" depends on itself through depends_on: a → a",
            ),
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [b]\n",
                "compose service \"b\" depends on itself through depends_on: b → c → b",
            ),
        ] {
            let refusal = plan_stack(text, &[], &ComposeAllowances::default(), &[]).unwrap_err();
            assert_eq!(refusal.to_string(), message);
        }
        let unknown = plan_stack(
            "services:\n  a:\n    image: x\n    depends_on: [ghost]\n",
            &[],
            &ComposeAllowances::default(),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "compose service \"a\" has an invalid depends_on: there is no service \"ghost\" in the file"
        );
    }
}
