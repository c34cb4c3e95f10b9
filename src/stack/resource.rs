//! The contract every stack resource meets, and the one driver behind `plan`, `up` and
//! `down`.
//!
//! A resource ([`Resource`]) says how to observe itself, what differs from the spec (a
//! pure function), how to apply a change and how to delete itself. The driver does the
//! rest, the same way for every resource:
//!
//! * observation: every resource at once, in one concurrent wave;
//! * ownership: the stack's tag → [`Owner`], the `unowned` and foreign-owned rules, the
//!   `--adopt` tag diff, one warning format;
//! * apply order: a resource starts as soon as the resources it [`needs`](Resource::needs)
//!   are applied, everything else concurrently; a resource whose needs failed is not
//!   attempted;
//! * facts: values one resource learns and another needs (a secret's ARN for the task
//!   definition), from observation or from an apply's answer, so nothing is read again;
//! * delete: absent → nothing; not this stack's → kept with a note; else the
//!   resource's own delete. After every resource's [`check_delete`](Resource::check_delete)
//!   and [`prepare_delete`](Resource::prepare_delete) (the cluster stops the stack's
//!   tasks), every resource is deleted at once: AWS orders nothing else among them.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use futures::future::{join_all, FutureExt, Shared};

use super::{
    owner_label, Action, Change, Deletion, FieldDiff, Kind, Owner, Seen, StackCtx, StackSpec,
    TAG_STACK,
};
use crate::output::Tone;

/// Values resources learn and others need, by name (`secret_arn:anthropic_api_key`).
pub type Facts = BTreeMap<String, String>;

/// A resource of the stack: its kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Id {
    pub kind: Kind,
    pub name: String,
}

impl Id {
    pub fn new(kind: Kind, name: &str) -> Id {
        Id {
            kind,
            name: name.to_string(),
        }
    }
}

/// Why a resource is observed: `down` may need more than the plan does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Plan,
    Delete,
}

/// One AWS resource of the stack. Implementations never print; the driver reports.
#[async_trait]
pub trait Resource: Send + Sync {
    /// What [`observe`](Resource::observe) finds, besides tags and owner.
    type Have: Send + Sync;

    fn kind(&self) -> Kind;
    fn name(&self) -> &str;

    /// Resources whose apply must be finished before this one's begins.
    fn needs(&self) -> Vec<Id> {
        vec![]
    }

    /// Resources that belong to this one and are reported beside it (a role's inline
    /// policy): they are observed, applied and deleted with it, and owned when it is.
    fn parts(&self) -> Vec<Id> {
        vec![]
    }

    /// What AWS holds under this name; `None` when it does not exist. The tags go into
    /// [`Seen::new`], which decides the owner.
    async fn observe(
        &self,
        cx: &StackCtx<'_>,
        intent: Intent,
    ) -> anyhow::Result<Option<Seen<Self::Have>>>;

    /// How an owned resource differs from the spec (tags are the driver's concern).
    fn diff(&self, spec: &StackSpec, have: &Self::Have, facts: &Facts) -> Vec<FieldDiff>;

    /// Notes for the resource's change (a secret without a value).
    fn notes(&self, _seen: Option<&Seen<Self::Have>>, _change: &Change) -> Vec<String> {
        vec![]
    }

    /// The changes of the [`parts`](Resource::parts), given the resource's own change.
    fn plan_parts(
        &self,
        _spec: &StackSpec,
        _own: &Change,
        _seen: Option<&Seen<Self::Have>>,
    ) -> Vec<Change> {
        vec![]
    }

    /// The facts an observed resource tells others.
    fn facts(&self, _have: &Self::Have) -> Facts {
        Facts::new()
    }

    /// Make AWS match `own` and `parts` (at least one is a create or an update). Returns
    /// the facts learnt from AWS's answers.
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        own: &Change,
        parts: &[Change],
        seen: Option<&Seen<Self::Have>>,
        facts: &Facts,
    ) -> anyhow::Result<Facts>;

    /// Refuse `down` before anything is deleted (the cluster runs someone else's tasks).
    fn check_delete(&self, _cx: &StackCtx<'_>, _seen: &Seen<Self::Have>) -> anyhow::Result<()> {
        Ok(())
    }

    /// What must happen before any resource is deleted (the stack's tasks stopped).
    async fn prepare_delete(
        &self,
        _cx: &StackCtx<'_>,
        _seen: &Seen<Self::Have>,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// Delete a resource this stack owns. Returns what happened to it, then to each part.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        seen: &Seen<Self::Have>,
        force: bool,
    ) -> anyhow::Result<Vec<Deletion>>;
}

/// The change for one resource from its observation and field diff: create when absent;
/// unowned when not this stack's (or untagged without `--adopt`); else the tag diff and
/// the resource's own diff.
pub fn change_for<T>(
    kind: Kind,
    name: &str,
    seen: Option<&Seen<T>>,
    diff: impl FnOnce(&T) -> Vec<FieldDiff>,
    adopt: bool,
) -> Change {
    let Some(s) = seen else {
        return Change::new(kind, name, Action::Create);
    };
    let mut c = Change::new(kind, name, Action::Noop);
    match &s.owner {
        // Proved ours without the tag (an interrupted create): the tag goes on.
        Owner::Us if !s.tags.contains_key(TAG_STACK) => c.diff.push(FieldDiff::new(
            "tags",
            "(none)",
            "lackey:stack, managed-by=lackey",
        )),
        Owner::Us => {}
        // Never taken over, not even with --adopt: `refuse_foreign` stops plan, up and
        // down before they get here.
        Owner::OtherStack(_) | Owner::OtherAccount => {
            c.action = Action::Unowned;
            c.notes
                .push(format!("belongs to {}; left alone", owner_label(&s.owner)));
            return c;
        }
        Owner::Nobody if !adopt => {
            c.action = Action::Unowned;
            c.notes.push(
                "exists without lackey's tags; left alone (`lackey up --adopt` takes it over)"
                    .into(),
            );
            return c;
        }
        Owner::Nobody => c.diff.push(FieldDiff::new(
            "tags",
            "(none)",
            "lackey:stack, managed-by=lackey",
        )),
    }
    c.diff.extend(diff(&s.state));
    if !c.diff.is_empty() {
        c.action = Action::Update;
    }
    c
}

/// What `down` reports for a resource, from what happened to it.
pub fn deleted(kind: Kind, name: &str, outcome: Deletion) -> Change {
    match outcome {
        Deletion::Deleted => Change::new(kind, name, Action::Delete),
        Deletion::Absent => Change::new(kind, name, Action::Noop),
        Deletion::NotOwned(note) => {
            let mut c = Change::new(kind, name, Action::Unowned);
            c.notes.push(note);
            c
        }
        Deletion::Kept(note) => {
            let mut c = Change::new(kind, name, Action::Noop);
            c.notes.push(note);
            c
        }
    }
}

/// Why `down` keeps a resource it does not own.
pub fn not_owned(owner: &Owner) -> Option<Deletion> {
    match owner {
        Owner::Us => None,
        Owner::OtherStack(_) | Owner::OtherAccount => Some(Deletion::NotOwned(format!(
            "belongs to {}; kept",
            owner_label(owner)
        ))),
        Owner::Nobody => Some(Deletion::NotOwned("has no lackey tags; kept".into())),
    }
}

/// One resource and what was seen of it: the driver's type-erased view.
#[async_trait]
pub trait Node: Send + Sync {
    fn id(&self) -> Id;
    fn needs(&self) -> Vec<Id>;
    async fn observe(&self, cx: &StackCtx<'_>, intent: Intent) -> anyhow::Result<()>;
    /// The owner of what was observed (`None`: absent).
    fn owner(&self) -> Option<&Owner>;
    fn facts(&self) -> Facts;
    /// The resource's change, then its parts'.
    fn plan(&self, spec: &StackSpec, facts: &Facts, adopt: bool) -> Vec<Change>;
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        changes: &[Change],
        facts: &Facts,
    ) -> anyhow::Result<Facts>;
    fn check_delete(&self, cx: &StackCtx<'_>) -> anyhow::Result<()>;
    async fn prepare_delete(&self, cx: &StackCtx<'_>) -> anyhow::Result<()>;
    async fn delete(&self, cx: &StackCtx<'_>, force: bool) -> anyhow::Result<Vec<Change>>;
}

/// A resource with its observation.
pub struct Slot<R: Resource> {
    resource: R,
    seen: OnceLock<Option<Seen<R::Have>>>,
}

impl<R: Resource> Slot<R> {
    pub fn new(resource: R) -> Slot<R> {
        Slot {
            resource,
            seen: OnceLock::new(),
        }
    }

    /// A slot whose observation is already known (tests of the pure planner).
    #[cfg(test)]
    pub fn seen(resource: R, seen: Option<Seen<R::Have>>) -> Slot<R> {
        let slot = Slot::new(resource);
        let _ = slot.seen.set(seen);
        slot
    }

    fn observed(&self) -> Option<&Seen<R::Have>> {
        self.seen.get().and_then(Option::as_ref)
    }
}

#[async_trait]
impl<R: Resource + 'static> Node for Slot<R> {
    fn id(&self) -> Id {
        Id::new(self.resource.kind(), self.resource.name())
    }

    fn needs(&self) -> Vec<Id> {
        self.resource.needs()
    }

    async fn observe(&self, cx: &StackCtx<'_>, intent: Intent) -> anyhow::Result<()> {
        let seen = self.resource.observe(cx, intent).await?;
        let _ = self.seen.set(seen);
        Ok(())
    }

    fn owner(&self) -> Option<&Owner> {
        self.observed().map(|s| &s.owner)
    }

    fn facts(&self) -> Facts {
        self.observed()
            .map(|s| self.resource.facts(&s.state))
            .unwrap_or_default()
    }

    fn plan(&self, spec: &StackSpec, facts: &Facts, adopt: bool) -> Vec<Change> {
        let r = &self.resource;
        let seen = self.observed();
        let mut own = change_for(r.kind(), r.name(), seen, |h| r.diff(spec, h, facts), adopt);
        let notes = r.notes(seen, &own);
        own.notes.extend(notes);
        let parts = r.plan_parts(spec, &own, seen);
        std::iter::once(own).chain(parts).collect()
    }

    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        changes: &[Change],
        facts: &Facts,
    ) -> anyhow::Result<Facts> {
        let (own, parts) = changes
            .split_first()
            .expect("a plan has the resource's change");
        self.resource
            .apply(cx, own, parts, self.observed(), facts)
            .await
    }

    fn check_delete(&self, cx: &StackCtx<'_>) -> anyhow::Result<()> {
        match self.observed() {
            Some(s) if s.owner == Owner::Us => self.resource.check_delete(cx, s),
            _ => Ok(()),
        }
    }

    async fn prepare_delete(&self, cx: &StackCtx<'_>) -> anyhow::Result<()> {
        match self.observed() {
            Some(s) if s.owner == Owner::Us => self.resource.prepare_delete(cx, s).await,
            _ => Ok(()),
        }
    }

    async fn delete(&self, cx: &StackCtx<'_>, force: bool) -> anyhow::Result<Vec<Change>> {
        let r = &self.resource;
        let ids: Vec<Id> = std::iter::once(self.id()).chain(r.parts()).collect();
        let outcomes = match self.observed() {
            None => vec![Deletion::Absent; ids.len()],
            Some(s) => match not_owned(&s.owner) {
                Some(d) => vec![d; ids.len()],
                None => r.delete(cx, s, force).await?,
            },
        };
        Ok(ids
            .iter()
            .zip(outcomes)
            .map(|(id, d)| deleted(id.kind, &id.name, d))
            .collect())
    }
}

/// Observe every resource in one concurrent wave.
pub async fn observe_all(
    cx: &StackCtx<'_>,
    nodes: &[Box<dyn Node>],
    intent: Intent,
) -> anyhow::Result<()> {
    for r in join_all(nodes.iter().map(|n| n.observe(cx, intent))).await {
        r?;
    }
    Ok(())
}

/// The facts every observed resource tells.
pub fn observed_facts(nodes: &[Box<dyn Node>]) -> Facts {
    nodes.iter().flat_map(|n| n.facts()).collect()
}

/// The plan: a pure function of the spec and the observations.
pub fn plan(spec: &StackSpec, nodes: &[Box<dyn Node>], adopt: bool) -> Vec<Change> {
    let facts = observed_facts(nodes);
    nodes
        .iter()
        .flat_map(|n| n.plan(spec, &facts, adopt))
        .collect()
}

/// Refuse to plan, apply or delete a stack whose names another owner holds: two stacks
/// must never share a resource, and reporting one as "up to date" would hide that.
pub fn refuse_foreign(spec: &StackSpec, nodes: &[Box<dyn Node>]) -> anyhow::Result<()> {
    let foreign: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.owner().map(|o| (n.id(), o)))
        .filter(|(_, o)| matches!(o, Owner::OtherStack(_) | Owner::OtherAccount))
        .map(|(id, o)| {
            format!(
                "{} `{}` belongs to {}",
                id.kind.as_str(),
                id.name,
                owner_label(o)
            )
        })
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(crate::error::Fail::new(format!(
        "stack `{}` uses {} resource name(s) held by another owner: {}",
        spec.stack,
        foreign.len(),
        foreign.join("; ")
    ))
    .with_hint(format!(
        "give stack `{}` names of its own: remove the explicit names from lackey.toml so they derive from [stack] name (`lackey init --stack {} --force` writes them); if you meant the owner's stack, set its [stack] name instead",
        spec.stack, spec.stack
    ))
    .into())
}

fn describe(c: &Change) -> String {
    let mut s = format!("{} `{}`", c.kind.as_str(), c.name);
    if !c.diff.is_empty() {
        let fields: Vec<&str> = c.diff.iter().map(|d| d.field.as_str()).collect();
        s.push_str(&format!(" ({})", fields.join(", ")));
    }
    s
}

/// Report a change once it is done; a kept or unowned one as a warning.
fn report(cx: &StackCtx<'_>, c: &Change, started: Instant) {
    let (verb, tone) = match c.action {
        Action::Create => ("Created", Tone::Good),
        Action::Update => ("Updated", Tone::Warn),
        Action::Delete => ("Deleted", Tone::Bad),
        Action::Unowned => return warn(cx, c),
        Action::Noop if !c.notes.is_empty() && c.diff.is_empty() => return warn(cx, c),
        Action::Noop => return,
    };
    cx.reporter.status(
        verb,
        tone,
        &format!("{} in {:.1}s", describe(c), started.elapsed().as_secs_f64()),
    );
}

fn warn(cx: &StackCtx<'_>, c: &Change) {
    cx.reporter.warn(&format!(
        "{} `{}` {}",
        c.kind.as_str(),
        c.name,
        c.notes.join("; ")
    ));
}

fn changes_anything(changes: &[Change]) -> bool {
    changes
        .iter()
        .any(|c| matches!(c.action, Action::Create | Action::Update))
}

type Applied<'a> = Shared<Pin<Box<dyn Future<Output = Option<Facts>> + Send + 'a>>>;

/// Apply the plan: every resource once the resources it needs are applied, all others
/// concurrently. Returns the changes as decided with what was known when each resource
/// started (a task definition planned with unknown ARNs is decided again with the real
/// ones), and the errors by resource order.
pub async fn apply_all(
    cx: &StackCtx<'_>,
    nodes: &[Box<dyn Node>],
    adopt: bool,
) -> (Vec<Change>, Vec<anyhow::Error>) {
    let observed = observed_facts(nodes);
    let decided: Vec<Mutex<Vec<Change>>> = nodes.iter().map(|_| Mutex::new(vec![])).collect();
    let errors: Mutex<Vec<(usize, anyhow::Error)>> = Mutex::new(vec![]);
    // Built in list order; a resource may only need one listed before it.
    let mut started: Vec<Applied<'_>> = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let deps: Vec<Applied<'_>> = node
            .needs()
            .iter()
            .filter_map(|id| nodes[..i].iter().position(|n| n.id() == *id))
            .map(|j| started[j].clone())
            .collect();
        let (observed, decided, errors) = (&observed, &decided[i], &errors);
        let fut = async move {
            let mut facts = observed.clone();
            for learnt in join_all(deps).await {
                // A resource whose needs failed is not attempted.
                facts.extend(learnt?);
            }
            let changes = node.plan(&cx.spec, &facts, adopt);
            *decided.lock().unwrap_or_else(|e| e.into_inner()) = changes.clone();
            for c in changes.iter().filter(|c| c.action == Action::Unowned) {
                warn(cx, c);
            }
            if !changes_anything(&changes) {
                return Some(facts);
            }
            let t0 = Instant::now();
            match node.apply(cx, &changes, &facts).await {
                Ok(learnt) => {
                    for c in &changes {
                        if matches!(c.action, Action::Create | Action::Update) {
                            report(cx, c, t0);
                        }
                    }
                    facts.extend(learnt);
                    Some(facts)
                }
                Err(e) => {
                    errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, e));
                    None
                }
            }
        };
        let boxed: Pin<Box<dyn Future<Output = Option<Facts>> + Send + '_>> = Box::pin(fut);
        started.push(boxed.shared());
    }
    join_all(started).await;
    let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    let changes = decided
        .into_iter()
        .flat_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    (changes, errors.into_iter().map(|(_, e)| e).collect())
}

/// Delete what the stack owns: every check first (nothing is deleted when one refuses),
/// then every preparation, then every resource at once. Returns the changes in resource
/// order and the errors.
pub async fn delete_all(
    cx: &StackCtx<'_>,
    nodes: &[Box<dyn Node>],
    force: bool,
) -> anyhow::Result<(Vec<Change>, Vec<anyhow::Error>)> {
    for n in nodes {
        n.check_delete(cx)?;
    }
    for r in join_all(nodes.iter().map(|n| n.prepare_delete(cx))).await {
        r?;
    }
    let t0 = Instant::now();
    let results = join_all(nodes.iter().map(|n| async move {
        let r = n.delete(cx, force).await;
        if let Ok(changes) = &r {
            for c in changes {
                report(cx, c, t0);
            }
        }
        r
    }))
    .await;
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(cs) => changes.extend(cs),
            Err(e) => errors.push(e),
        }
    }
    Ok((changes, errors))
}
