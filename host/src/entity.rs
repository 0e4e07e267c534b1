//! A view's entity key: one event field (the plugin's `entity-key`) or, with
//! `entity_fields`, a tuple of fields. Events are grouped by the whole tuple.
//!
//! The tuple travels as one text id (the Kafka record key of feature records,
//! the `{entity}` of key templates, the `{entity}` of `GET /features/...`):
//! the field values in configured order, each with `\` written as `\\` and `:`
//! as `\:`, joined by `:`. So `("u1", "ios")` is `u1:ios`, `("a:b", "c")` is
//! `a\:b:c`, and two different tuples never share an id. A single-field key
//! is the value itself, unescaped (as before composite keys existed).

/// The fields identifying an entity, in configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityKey {
    fields: Vec<String>,
    /// Per field: the value must be an integer (an integer Feast join key).
    integer: Vec<bool>,
}

impl EntityKey {
    /// A key of one field.
    pub fn single(field: &str) -> Self {
        Self::new(vec![field.to_owned()])
    }

    /// A key of `fields` (at least one), all of any string or integer value.
    pub fn new(fields: Vec<String>) -> Self {
        let integer = vec![false; fields.len()];
        Self { fields, integer }
    }

    /// Requires `field`'s values to be integers (decoding rejects others).
    pub fn require_integer(&mut self, field: &str) {
        if let Some(i) = self.fields.iter().position(|f| f == field) {
            self.integer[i] = true;
        }
    }

    /// The field names, in order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// True when field `i` must hold an integer.
    pub fn is_integer(&self, i: usize) -> bool {
        self.integer[i]
    }

    /// True for a tuple of two or more fields.
    pub fn is_composite(&self) -> bool {
        self.fields.len() > 1
    }

    /// The id of the tuple `values` (one per field, in order).
    pub fn id<S: AsRef<str>>(&self, values: &[S]) -> String {
        if let [single] = values {
            return single.as_ref().to_owned();
        }
        let mut out = String::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            for c in v.as_ref().chars() {
                if c == '\\' || c == ':' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        out
    }

    /// The field values of `id`, or `None` when it does not hold one value per field.
    pub fn split(&self, id: &str) -> Option<Vec<String>> {
        if !self.is_composite() {
            return Some(vec![id.to_owned()]);
        }
        let mut values = vec![String::new()];
        let mut chars = id.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => values.last_mut()?.push(chars.next()?),
                ':' => values.push(String::new()),
                c => values.last_mut()?.push(c),
            }
        }
        (values.len() == self.fields.len()).then_some(values)
    }

    /// The default online-key template: `features:{<field>}` for one field,
    /// `features:{entity}` for a tuple.
    pub fn default_template(&self) -> String {
        match self.fields.as_slice() {
            [single] => format!("features:{{{single}}}"),
            _ => "features:{entity}".to_owned(),
        }
    }

    /// `template` with `{entity}` replaced by `id` and each `{<field>}` by that
    /// field's value. `None` when `id` is not a valid id of this key.
    pub fn online_key(&self, template: &str, id: &str) -> Option<String> {
        let values = self.split(id)?;
        let mut key = template.replace("{entity}", id);
        for (field, value) in self.fields.iter().zip(&values) {
            key = key.replace(&format!("{{{field}}}"), value);
        }
        Some(key)
    }
}

/// An online-key template compiled for one entity key: what
/// [`EntityKey::online_key`] gives, but a single field's template is split
/// once, so that a key is one pass of copies (and an id that looks like a
/// placeholder is not substituted again).
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    template: String,
    entity: EntityKey,
    /// For a single-field key: the literal text around the placeholders (the
    /// id goes between two parts).
    parts: Option<Vec<String>>,
}

impl KeyTemplate {
    /// `template` for ids of `entity`.
    pub fn new(entity: &EntityKey, template: &str) -> Self {
        let parts = match entity.fields() {
            [single] => {
                let named = format!("{{{single}}}");
                let mut parts = vec![String::new()];
                let mut rest = template;
                while !rest.is_empty() {
                    if let Some(after) = rest
                        .strip_prefix("{entity}")
                        .or_else(|| rest.strip_prefix(named.as_str()))
                    {
                        parts.push(String::new());
                        rest = after;
                    } else {
                        let c = rest.chars().next().expect("not empty");
                        parts.last_mut().expect("never empty").push(c);
                        rest = &rest[c.len_utf8()..];
                    }
                }
                Some(parts)
            }
            _ => None,
        };
        Self {
            template: template.to_owned(),
            entity: entity.clone(),
            parts,
        }
    }

    /// The key of entity `id`; `None` when `id` is not an id of the entity key.
    pub fn render(&self, id: &str) -> Option<String> {
        let Some(parts) = &self.parts else {
            return self.entity.online_key(&self.template, id);
        };
        let literal: usize = parts.iter().map(String::len).sum();
        let mut key = String::with_capacity(literal + id.len() * (parts.len() - 1));
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push_str(id);
            }
            key.push_str(part);
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_templates_put_the_id_at_every_placeholder() {
        let user = EntityKey::single("user_id");
        let cases = [
            ("features:{user_id}", "features:u1"),
            ("features:{entity}", "features:u1"),
            ("{entity}|{user_id}|{other}", "u1|u1|{other}"),
            ("plain", "plain"),
            ("", ""),
            ("é{entity}ü", "éu1ü"),
        ];
        for (template, want) in cases {
            let key = KeyTemplate::new(&user, template).render("u1");
            assert_eq!(key.as_deref(), Some(want));
            // The same as substituting the placeholders one after another.
            assert_eq!(key, user.online_key(template, "u1"));
        }
        // An id that looks like a placeholder is not substituted again.
        assert_eq!(
            KeyTemplate::new(&user, "k:{entity}").render("{user_id}"),
            Some("k:{user_id}".to_owned())
        );
        // A tuple's key: each field's value, and the id for `{entity}`.
        let pair = EntityKey::new(vec!["user_id".into(), "device".into()]);
        let template = KeyTemplate::new(&pair, "f:{user_id}/{device}|{entity}");
        assert_eq!(
            template.render("u1:ios").as_deref(),
            Some("f:u1/ios|u1:ios")
        );
        assert_eq!(template.render("u1"), None, "not an id of the pair");
    }

    fn pair() -> EntityKey {
        EntityKey::new(vec!["user_id".into(), "device".into()])
    }

    #[test]
    fn a_single_field_is_its_value() {
        let k = EntityKey::single("user_id");
        assert_eq!(k.id(&["a:b\\c"]), "a:b\\c");
        assert_eq!(k.split("a:b"), Some(vec!["a:b".to_owned()]));
        assert_eq!(k.default_template(), "features:{user_id}");
        assert_eq!(k.online_key("p:{user_id}", "u1").as_deref(), Some("p:u1"));
    }

    #[test]
    fn tuples_are_escaped_and_joined() {
        let k = pair();
        assert_eq!(k.id(&["u1", "ios"]), "u1:ios");
        assert_eq!(k.id(&["a:b", "c"]), r"a\:b:c");
        assert_eq!(k.id(&["a", "b:c"]), r"a:b\:c");
        assert_eq!(k.id(&[r"x\", ""]), r"x\\:");
        for values in [["u1", "ios"], ["a:b", "c"], ["a", "b:c"], [r"x\", ""]] {
            let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
            assert_eq!(k.split(&k.id(&values)), Some(values));
        }
        assert_eq!(k.split("u1"), None);
        assert_eq!(k.split("a:b:c"), None);
        assert_eq!(k.split("a\\"), None);
    }

    #[test]
    fn templates_take_the_id_or_each_field() {
        let k = pair();
        assert_eq!(k.default_template(), "features:{entity}");
        assert_eq!(
            k.online_key("features:{entity}", r"a\:b:c").as_deref(),
            Some(r"features:a\:b:c")
        );
        assert_eq!(
            k.online_key("f:{device}:{user_id}", "u1:ios").as_deref(),
            Some("f:ios:u1")
        );
        assert_eq!(k.online_key("f:{entity}", "u1"), None);
    }
}
