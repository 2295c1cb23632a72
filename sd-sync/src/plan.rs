//! The pure part of a sync: from a complete listing and what is installed, what to fetch
//! and what to delete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use gds_store::{Bytes, ETag};

/// One `*.json` object directly under a mapping's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// The key without the prefix: the local file name.
    pub name: String,
    /// The normalised ETag from the listing.
    pub etag: ETag,
    /// The size in bytes from the listing.
    pub size: u64,
    /// The listing's `LastModified`: when the store took this version (the store's clock).
    pub last_modified: Option<std::time::SystemTime>,
}

/// A file installed in a mapping's directory, as sd-sync knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The MD5 of the file's bytes.
    pub etag: ETag,
    /// The listing's ETag of the object the file came from, when that is not the MD5
    /// (multipart uploads, SSE-KMS): remembered so that such an object is not fetched on
    /// every poll.
    pub source_etag: Option<ETag>,
    /// The file's target groups (see [`crate::filesd::Groups`]); empty when the file was
    /// found invalid in the directory at start.
    pub fragment: Bytes,
}

impl Entry {
    /// Whether the installed file is the listed version of its object.
    pub fn is_current(&self, listed: &ETag) -> bool {
        &self.etag == listed || self.source_etag.as_ref() == Some(listed)
    }
}

/// What one sync does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Objects that are new or changed, in listing order.
    pub fetch: Vec<ListedObject>,
    /// How many of `fetch` are new (the rest are changed).
    pub new: usize,
    /// Installed files whose object is no longer listed.
    pub delete: Vec<String>,
    /// Listed objects whose installed file is current.
    pub unchanged: usize,
    /// Listed objects skipped because this very version was already found invalid.
    pub known_invalid: usize,
}

impl Plan {
    /// Whether the sync changes nothing.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty() && self.delete.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fetch {} ({} new, {} changed), delete {}, unchanged {}",
            self.fetch.len(),
            self.new,
            self.fetch.len() - self.new,
            self.delete.len(),
            self.unchanged
        )?;
        if self.known_invalid > 0 {
            write!(f, ", known invalid {}", self.known_invalid)?;
        }
        Ok(())
    }
}

impl Plan {
    /// Plans the fetches of one page of a listing (pages may come in any order) and
    /// returns them: the objects that are new or changed, unless this very version was
    /// already found invalid (`rejected`).
    pub fn add_page(
        &mut self,
        page: &[ListedObject],
        installed: &BTreeMap<String, Entry>,
        rejected: &HashMap<String, ETag>,
    ) -> Vec<ListedObject> {
        let mut fetch = Vec::new();
        for object in page {
            let current = installed.get(&object.name);
            if current.is_some_and(|entry| entry.is_current(&object.etag)) {
                self.unchanged += 1;
            } else if rejected.get(&object.name) == Some(&object.etag) {
                self.known_invalid += 1;
            } else {
                if current.is_none() {
                    self.new += 1;
                }
                fetch.push(object.clone());
            }
        }
        self.fetch.extend(fetch.iter().cloned());
        fetch
    }

    /// Plans the deletions once the listing is complete: every installed file it does
    /// not name (which the safety valve may still hold back). Never call it with a
    /// partial listing.
    pub fn finish(
        &mut self,
        complete_listing: &[ListedObject],
        installed: &BTreeMap<String, Entry>,
    ) {
        let listed: HashSet<&str> = complete_listing.iter().map(|o| o.name.as_str()).collect();
        self.delete = installed
            .keys()
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
    }
}

/// Plans a whole sync from a complete listing: [`Plan::add_page`] then [`Plan::finish`].
pub fn plan(
    listing: &[ListedObject],
    installed: &BTreeMap<String, Entry>,
    rejected: &HashMap<String, ETag>,
) -> Plan {
    let mut plan = Plan::default();
    plan.add_page(listing, installed, rejected);
    plan.finish(listing, installed);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, content: &str) -> ListedObject {
        ListedObject {
            name: name.into(),
            etag: ETag::of(content.as_bytes()),
            size: content.len() as u64,
            last_modified: None,
        }
    }

    fn installed(files: &[(&str, &str)]) -> BTreeMap<String, Entry> {
        files
            .iter()
            .map(|(name, content)| {
                let entry = Entry {
                    etag: ETag::of(content.as_bytes()),
                    source_etag: None,
                    fragment: Bytes::new(),
                };
                (name.to_string(), entry)
            })
            .collect()
    }

    #[test]
    fn new_and_changed_objects_are_fetched_and_vanished_files_deleted() {
        let listing = [
            listed("a.json", "[1]"),
            listed("b.json", "[2]"),
            listed("c.json", "[3]"),
        ];
        let local = installed(&[("a.json", "[1]"), ("b.json", "[9]"), ("d.json", "[4]")]);
        let plan = plan(&listing, &local, &HashMap::new());
        let fetched: Vec<&str> = plan.fetch.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(fetched, ["b.json", "c.json"]);
        assert_eq!(plan.new, 1);
        assert_eq!(plan.delete, ["d.json"]);
        assert_eq!(plan.unchanged, 1);
        assert_eq!(
            plan.to_string(),
            "fetch 2 (1 new, 1 changed), delete 1, unchanged 1"
        );
    }

    #[test]
    fn a_same_size_change_is_a_change() {
        let listing = [listed("a.json", "[2]")];
        let plan = plan(&listing, &installed(&[("a.json", "[1]")]), &HashMap::new());
        assert_eq!(plan.fetch, listing);
    }

    #[test]
    fn an_identical_directory_needs_nothing() {
        let listing = [listed("a.json", "[1]")];
        let plan = plan(&listing, &installed(&[("a.json", "[1]")]), &HashMap::new());
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn a_version_known_to_be_invalid_is_not_fetched_again_but_a_new_one_is() {
        let bad = listed("a.json", "[");
        let rejected = HashMap::from([("a.json".to_string(), bad.etag.clone())]);
        let local = installed(&[("a.json", "[1]")]);
        let plan_bad = plan(std::slice::from_ref(&bad), &local, &rejected);
        assert!(plan_bad.is_empty(), "{plan_bad}");
        assert_eq!(plan_bad.known_invalid, 1);
        let fixed = listed("a.json", "[3]");
        assert_eq!(
            plan(std::slice::from_ref(&fixed), &local, &rejected).fetch,
            [fixed]
        );
    }

    #[test]
    fn a_listing_etag_that_is_not_the_md5_is_remembered_as_the_source() {
        let mut local = installed(&[("a.json", "[1]")]);
        let multipart = ListedObject {
            name: "a.json".into(),
            etag: ETag::from_store("\"abc-2\""),
            size: 3,
            last_modified: None,
        };
        assert_eq!(
            plan(std::slice::from_ref(&multipart), &local, &HashMap::new())
                .fetch
                .len(),
            1
        );
        local.get_mut("a.json").unwrap().source_etag = Some(multipart.etag.clone());
        assert!(plan(&[multipart], &local, &HashMap::new()).is_empty());
    }

    #[test]
    fn pages_add_up_to_the_plan_of_the_whole_listing() {
        let listing = [
            listed("a.json", "[1]"),
            listed("b.json", "[2]"),
            listed("c.json", "[3]"),
        ];
        let local = installed(&[("a.json", "[1]"), ("b.json", "[9]"), ("d.json", "[4]")]);
        let mut paged = Plan::default();
        let second = paged.add_page(&listing[1..], &local, &HashMap::new());
        let first = paged.add_page(&listing[..1], &local, &HashMap::new());
        assert!(first.is_empty());
        assert_eq!(second.len(), 2);
        paged.finish(&listing, &local);
        assert_eq!(paged, plan(&listing, &local, &HashMap::new()));
    }

    #[test]
    fn an_empty_listing_plans_to_delete_everything() {
        let local = installed(&[("a.json", "[1]"), ("b.json", "[2]")]);
        assert_eq!(
            plan(&[], &local, &HashMap::new()).delete,
            ["a.json", "b.json"]
        );
    }
}
