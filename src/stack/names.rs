//! Deterministic names and tokens. Everything stackpilot sends to
//! CloudFormation is named from the object (uid, generation, fingerprint of the
//! resolved inputs, step), so a retried or restarted reconcile repeats the same
//! call instead of starting a second operation.

use sha2::{Digest, Sha256};

use crate::aws::TemplateSource;

/// Tag keys that mark a stack as managed by one Stack object.
pub const TAG_NAMESPACE: &str = "stackpilot.dev/namespace";
pub const TAG_NAME: &str = "stackpilot.dev/name";
pub const TAG_UID: &str = "stackpilot.dev/uid";

/// The default stack name `<namespace>-<name>`, with characters CloudFormation
/// does not allow in names mapped to `-`.
pub fn default_stack_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect()
}

/// Checks CloudFormation's stack name rule: a letter, then letters, digits and
/// hyphens, at most 128 characters.
pub fn validate_stack_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(format!(
            "stack name {name:?} is not valid for CloudFormation: it must start with a letter, \
             contain only letters, digits and hyphens, and be at most 128 characters; recreate the Stack \
             with a valid spec.stackName (it cannot be added to an existing Stack)"
        ));
    }
    Ok(())
}

/// Fingerprint of everything that decides what CloudFormation is asked to do.
/// Parameter values go in as a hash together with the rest, never shown.
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn field(&mut self, label: &str, value: &str) -> &mut Self {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [label, value] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part.as_bytes());
        }
        self
    }

    pub fn template(&mut self, template: &TemplateSource) -> &mut Self {
        match template {
            TemplateSource::Body(body) => self.field("body", body),
            TemplateSource::Url(url) => self.field("url", url),
        }
    }

    /// 16 hex characters: enough to tell revisions apart, short enough for names.
    pub fn finish(&self) -> String {
        let digest = self.0.clone().finalize();
        hex::encode(&digest[..8])
    }
}

/// Change set name for one generation and fingerprint: approving it by name
/// approves exactly these inputs.
pub fn change_set_name(generation: i64, fingerprint: &str) -> String {
    format!("stackpilot-g{generation}-{fingerprint}")
}

/// The change set that takes a stack from the inputs it runs (`applied`,
/// their fingerprint) to `desired`: the same name after a restart, and a
/// new one for every transition. Inputs that come back (a `git revert` of a
/// template from a Flux source keeps the generation) must not reuse the name
/// and idempotency token of the change set that applied them before: an
/// endpoint that still lists it (LocalStack does) would answer with the old,
/// executed one, and nothing would run.
pub fn transition_change_set_name(generation: i64, desired: &str, applied: Option<&str>) -> String {
    match applied.filter(|from| *from != desired) {
        None => change_set_name(generation, desired),
        Some(from) => change_set_name(
            generation,
            &Fingerprint::default().field("to", desired).field("from", from).finish(),
        ),
    }
}

/// Idempotency token for one step of one object's reconcile.
pub fn client_token(uid: &str, step: &str, discriminator: &str) -> String {
    let uid: String = uid.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
    let token = format!("sp-{uid}-{step}-{discriminator}");
    token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_maps_dots_and_keeps_hyphens() {
        assert_eq!(default_stack_name("team-a", "web.assets"), "team-a-web-assets");
    }

    #[test]
    fn stack_names_are_checked() {
        assert!(validate_stack_name("team-a-web").is_ok());
        assert!(validate_stack_name("1team").is_err());
        assert!(validate_stack_name("a_b").is_err());
        assert!(validate_stack_name(&"a".repeat(129)).is_err());
        assert!(validate_stack_name("").is_err());
    }

    #[test]
    fn fingerprint_separates_fields_and_is_stable() {
        let a = Fingerprint::default().field("p", "ab").field("q", "c").finish();
        let b = Fingerprint::default().field("p", "a").field("q", "bc").finish();
        let again = Fingerprint::default().field("p", "ab").field("q", "c").finish();
        assert_ne!(a, b);
        assert_eq!(a, again);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn a_transition_back_to_earlier_inputs_has_a_new_name() {
        let create = transition_change_set_name(1, "aaaa", None);
        assert_eq!(create, change_set_name(1, "aaaa"));
        let to_b = transition_change_set_name(1, "bbbb", Some("aaaa"));
        let back_to_a = transition_change_set_name(1, "aaaa", Some("bbbb"));
        assert_ne!(back_to_a, create, "a revert does not reuse the create's change set");
        assert_ne!(back_to_a, to_b);
        assert_eq!(back_to_a, transition_change_set_name(1, "aaaa", Some("bbbb")), "stable");
        assert!(back_to_a.len() <= 128 && back_to_a.starts_with("stackpilot-g1-"));
        // Nothing to change: the plain name.
        assert_eq!(transition_change_set_name(1, "aaaa", Some("aaaa")), create);
    }

    #[test]
    fn tokens_are_valid_and_bounded() {
        let token = client_token("0d9c2b1a-77e0-4bd7-9a57-0f1f7d4f1e2a", "execute", &"f".repeat(200));
        assert!(token.len() <= 128);
        assert!(token.starts_with("sp-0d9c2b1a77e0-execute-"));
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
