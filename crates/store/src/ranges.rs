//! Listing one key prefix as parallel ranges, with the previous listing's keys as
//! boundaries, without spending more requests than a sequential listing.
//!
//! A sequential `ListObjectsV2` listing of N keys takes ceil(N/1000) requests, one after
//! the other: each page needs the previous page's continuation token. With 100 ms a page
//! that is 0.9 s for 9,000 keys. A long-running lister (the updater, sd-sync) lists the
//! same prefix again and again, though, and the keys change little between two listings. So:
//!
//! - after a complete listing, remember every 1000th key, `b_1 = k_1000`, `b_2 = k_2000`,
//!   … (the page boundaries of that listing; [`boundaries_of`]), but never the very last
//!   key (a range after it would cost one request for an empty page);
//! - next time, list range `i` = the keys in `(b_i, b_{i+1}]` (`b_0` = -∞, the last range
//!   unbounded above) with `StartAfter = b_i` (none for range 0) and 1000 keys a page,
//!   every range concurrently ([`list_in_ranges`]);
//! - a range is complete once a page reaches a key `>= b_{i+1}` (the keys beyond its end
//!   are dropped: they are the next range's) or the listing is exhausted; a page that
//!   ends before the boundary (keys were added in the range) is continued with its
//!   continuation token, one more request for that range only.
//!
//! Correctness needs no assumption on the boundaries but that they increase strictly: the
//! ranges partition the key space, each range keeps only keys in its own interval (keys
//! at or before its start, or out of order, are dropped defensively), so no key is ever
//! listed twice, and each range reads its interval up to its end or the end of the
//! listing, so no key is missed. Boundaries that no longer exist (removed keys), ranges
//! that became empty, boundaries beyond the last key: all still give exactly the full
//! listing, only the request count changes. Any failing page fails the whole listing: a
//! partial listing must never be returned (see [`crate::TargetStore::list_apps`]).
//!
//! In steady state (no key added or removed) range `i` gets exactly `k_{1000i+1} ..=
//! k_{1000(i+1)}` in its first page, whose last key is its boundary: one request per
//! range, ceil(N/1000) in all, the same as the sequential listing, and the wall time of
//! about one page. Removing keys costs nothing more (a page runs past the boundary);
//! adding keys costs one request per 1000 added keys in a range; the next listing is
//! aligned again. With no previous listing, there is a single unbounded range: the
//! sequential listing.

use futures::stream::{self, StreamExt, TryStreamExt};

/// One key of a listing page, with whatever the store says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    pub key: String,
    pub etag: String,
    pub size: u64,
    /// The object's `LastModified` (the store's clock; whole seconds on S3), when given.
    pub last_modified: Option<std::time::SystemTime>,
}

/// A page request: either the first page of a range (`start_after`, none for the first
/// range) or the next page of a range (`continuation`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageRequest {
    StartAfter(Option<String>),
    Continue(String),
}

/// A page: its keys in ascending order, and the continuation token when there are more
/// (the page was truncated). A truncated page without a token is the fetcher's error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<ListedKey>,
    pub next: Option<String>,
}

/// Lists every key, as the ranges that `boundaries` (strictly increasing) delimit, up to
/// `concurrency` ranges at a time, and returns them in ascending order. `fetch` gets one
/// page. Fails as soon as any page fails.
pub async fn list_in_ranges<F, Fut, E>(
    boundaries: &[String],
    concurrency: usize,
    fetch: F,
) -> Result<Vec<ListedKey>, E>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page, E>>,
{
    list_in_ranges_streaming(boundaries, concurrency, fetch, |_| {}).await
}

/// [`list_in_ranges`], also handing each page's keys of its range to `on_keys` as the
/// page arrives (ranges interleave: the calls are in no particular order, but together
/// they are the listing, each key once), so that work on them can start before the
/// listing ends. Keys handed over before a failure were listed, but the listing is not
/// complete.
pub async fn list_in_ranges_streaming<F, Fut, E>(
    boundaries: &[String],
    concurrency: usize,
    fetch: F,
    on_keys: impl Fn(&[ListedKey]),
) -> Result<Vec<ListedKey>, E>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page, E>>,
{
    debug_assert!(boundaries.windows(2).all(|w| w[0] < w[1]));
    // Owned bounds: futures that borrow through closures trip the `Send` check of
    // `async_trait` callers.
    let starts = std::iter::once(None).chain(boundaries.iter().cloned().map(Some));
    let ends = boundaries
        .iter()
        .cloned()
        .map(Some)
        .chain(std::iter::once(None));
    let on_keys = &on_keys;
    let ranges: Vec<_> = starts
        .zip(ends)
        .map(|(start, end)| list_range(&fetch, start, end, on_keys))
        .collect();
    // `buffered` keeps the ranges in order, so the concatenation is sorted; `try_collect`
    // returns the first error and drops the ranges still running.
    let ranges: Vec<Vec<ListedKey>> = stream::iter(ranges)
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(ranges.concat())
}

/// The keys in `(start, end]` (`None`: unbounded).
async fn list_range<F, Fut, E>(
    fetch: &F,
    start: Option<String>,
    end: Option<String>,
    on_keys: &impl Fn(&[ListedKey]),
) -> Result<Vec<ListedKey>, E>
where
    F: Fn(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page, E>>,
{
    let mut listed: Vec<ListedKey> = Vec::new();
    let mut request = PageRequest::StartAfter(start.clone());
    loop {
        let page = fetch(request).await?;
        let before = listed.len();
        let mut reached_end = false;
        for key in page.keys {
            // Never a key at or before the range's start or the key before it: that would
            // be a duplicate (of the previous range's or of this one's).
            let floor = listed.last().map(|k| &k.key).or(start.as_ref());
            if floor.is_some_and(|floor| key.key <= *floor) {
                continue;
            }
            if let Some(end) = &end {
                if key.key > *end {
                    // The next range's (which lists it itself).
                    reached_end = true;
                    break;
                }
                if key.key == *end {
                    reached_end = true;
                    listed.push(key);
                    break;
                }
            }
            listed.push(key);
        }
        on_keys(&listed[before..]);
        match page.next {
            Some(token) if !reached_end => request = PageRequest::Continue(token),
            // The end of the range, or of the whole listing.
            _ => return Ok(listed),
        }
    }
}

/// The boundaries for the next listing after the complete listing `keys` (ascending),
/// with `page_size` keys a page: every `page_size`th key, except the last key.
pub fn boundaries_of(keys: &[ListedKey], page_size: usize) -> Vec<String> {
    let page_size = page_size.max(1);
    keys.iter()
        .enumerate()
        .skip(page_size - 1)
        .step_by(page_size)
        .filter(|(i, _)| i + 1 < keys.len())
        .map(|(_, k)| k.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PAGE: usize = 10;

    /// A bucket with S3's listing semantics: keys in ascending order, `PAGE` a page; the
    /// continuation token is the last key returned. Counts requests and the most in
    /// flight at once, and fails the first page of the range starting after `fail_after`.
    #[derive(Default)]
    struct Bucket {
        keys: BTreeSet<String>,
        requests: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        fail_after: Mutex<Option<Option<String>>>,
    }

    impl Bucket {
        fn with(keys: impl IntoIterator<Item = String>) -> Bucket {
            Bucket {
                keys: keys.into_iter().collect(),
                ..Bucket::default()
            }
        }

        async fn fetch(&self, request: PageRequest) -> Result<Page, String> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // Let the other ranges start before this one answers.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let after = match &request {
                PageRequest::StartAfter(start) => {
                    if self.fail_after.lock().unwrap().as_ref() == Some(start) {
                        return Err(format!("injected failure after {start:?}"));
                    }
                    start.clone()
                }
                PageRequest::Continue(token) => Some(token.clone()),
            };
            let mut rest = self
                .keys
                .iter()
                .filter(|k| after.as_ref().is_none_or(|a| *k > a));
            let keys: Vec<ListedKey> = rest
                .by_ref()
                .take(PAGE)
                .map(|k| ListedKey {
                    key: k.clone(),
                    etag: format!("etag-{k}"),
                    size: k.len() as u64,
                    last_modified: None,
                })
                .collect();
            let next = rest.next().map(|_| keys.last().unwrap().key.clone());
            Ok(Page { keys, next })
        }

        /// Lists with `boundaries`; checks that the keys streamed page by page are the
        /// listing, each once.
        async fn list(&self, boundaries: &[String]) -> Result<Vec<ListedKey>, String> {
            self.requests.store(0, Ordering::SeqCst);
            self.max_in_flight.store(0, Ordering::SeqCst);
            let streamed = Mutex::new(Vec::new());
            let on_keys = |keys: &[ListedKey]| streamed.lock().unwrap().extend_from_slice(keys);
            let listed =
                list_in_ranges_streaming(boundaries, 16, |r| self.fetch(r), on_keys).await?;
            let mut streamed = streamed.into_inner().unwrap();
            streamed.sort_by(|a, b| a.key.cmp(&b.key));
            assert_eq!(streamed, listed, "the streamed keys are not the listing");
            Ok(listed)
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn expected(&self) -> Vec<ListedKey> {
            self.keys
                .iter()
                .map(|k| ListedKey {
                    key: k.clone(),
                    etag: format!("etag-{k}"),
                    size: k.len() as u64,
                    last_modified: None,
                })
                .collect()
        }
    }

    fn key(i: usize) -> String {
        format!("active/{i:06}.json")
    }

    fn keys(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(key).collect()
    }

    /// Lists `before` sequentially, then `after` with the first listing's boundaries;
    /// checks that both are exact and returns the second listing's request count.
    async fn relist(before: Vec<String>, after: Vec<String>) -> usize {
        let bucket = Bucket::with(before);
        let first = bucket.list(&[]).await.unwrap();
        assert_eq!(first, bucket.expected());
        assert_eq!(bucket.requests(), bucket.keys.len().div_ceil(PAGE).max(1));
        let boundaries = boundaries_of(&first, PAGE);
        let bucket = Bucket::with(after);
        let second = bucket.list(&boundaries).await.unwrap();
        assert_eq!(
            second,
            bucket.expected(),
            "the range listing is not the full listing"
        );
        bucket.requests()
    }

    #[tokio::test]
    async fn without_boundaries_the_listing_is_sequential() {
        let bucket = Bucket::with(keys(0..95));
        assert_eq!(bucket.list(&[]).await.unwrap(), bucket.expected());
        assert_eq!(bucket.requests(), 10);
        assert_eq!(bucket.max_in_flight.load(Ordering::SeqCst), 1);
        let empty = Bucket::default();
        assert_eq!(empty.list(&[]).await.unwrap(), vec![]);
        assert_eq!(empty.requests(), 1);
    }

    #[test]
    fn boundaries_are_every_page_sizeth_key_but_never_the_last() {
        let listed = |n| {
            keys(0..n)
                .into_iter()
                .map(|key| ListedKey {
                    key,
                    etag: String::new(),
                    size: 0,
                    last_modified: None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(boundaries_of(&listed(0), PAGE), Vec::<String>::new());
        assert_eq!(boundaries_of(&listed(10), PAGE), Vec::<String>::new());
        assert_eq!(boundaries_of(&listed(11), PAGE), vec![key(9)]);
        assert_eq!(boundaries_of(&listed(20), PAGE), vec![key(9)]);
        assert_eq!(
            boundaries_of(&listed(95), PAGE),
            [9, 19, 29, 39, 49, 59, 69, 79, 89].map(key)
        );
    }

    #[tokio::test]
    async fn unchanged_keys_take_as_many_requests_as_a_sequential_listing_all_at_once() {
        for n in [1, 9, 10, 11, 90, 95, 100] {
            let requests = relist(keys(0..n), keys(0..n)).await;
            assert_eq!(requests, n.div_ceil(PAGE), "{n} keys");
        }
        let bucket = Bucket::with(keys(0..95));
        let boundaries = boundaries_of(&bucket.list(&[]).await.unwrap(), PAGE);
        assert_eq!(bucket.list(&boundaries).await.unwrap(), bucket.expected());
        assert_eq!(
            bucket.max_in_flight.load(Ordering::SeqCst),
            10,
            "the ranges are not listed concurrently"
        );
    }

    #[tokio::test]
    async fn keys_added_in_a_range_are_listed_with_one_more_page_for_that_range() {
        let before = keys(0..950).into_iter().step_by(10).collect::<Vec<_>>();
        // 95 keys (k0, k10, … k940); the boundaries are k90, k190, …; add 5 keys inside
        // the second range, (k90, k190]: it takes two pages.
        let mut after = before.clone();
        after.extend([101, 102, 103, 104, 105].map(key));
        assert_eq!(relist(before.clone(), after).await, 10 + 1);
        // Added before the first key, between ranges, after the last one.
        let mut after = before.clone();
        after.extend([key(0) + "0", key(95), key(99), key(949), key(5000)]);
        after.insert(0, "active/".into());
        let requests = relist(before.clone(), after).await;
        assert!((10..=13).contains(&requests), "{requests}");
    }

    #[tokio::test]
    async fn removed_keys_and_removed_boundaries_cost_nothing_more() {
        let before = keys(0..95);
        let after: Vec<String> = before
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0 && *i != 19 && *i != 29)
            .map(|(_, k)| k.clone())
            .collect();
        assert!(relist(before, after).await <= 10);
    }

    #[tokio::test]
    async fn emptied_ranges_give_nothing_and_miss_nothing() {
        let before = keys(0..95);
        // Range 3, (k29, k39], emptied; and ranges 5 and 6, boundary k59 included.
        let after: Vec<String> = before
            .iter()
            .enumerate()
            .filter(|(i, _)| !(30..=39).contains(i) && !(50..=69).contains(i))
            .map(|(_, k)| k.clone())
            .collect();
        assert!(relist(before.clone(), after).await <= 10);
        // Everything removed.
        assert_eq!(relist(before, Vec::new()).await, 10);
    }

    #[tokio::test]
    async fn boundaries_at_the_very_end_are_handled() {
        let before = keys(0..95);
        // The last range emptied (everything after the last boundary k89 gone), then the
        // last boundary itself gone too, then all of the last two ranges.
        for end in [90, 89, 75] {
            let requests = relist(before.clone(), keys(0..end)).await;
            assert!(requests <= 10, "{end}: {requests}");
        }
        // Exactly a multiple of the page size: no empty last range to ask for.
        assert_eq!(relist(keys(0..100), keys(0..100)).await, 10);
        // Growing at the end continues the last range.
        assert_eq!(relist(keys(0..95), keys(0..125)).await, 9 + 4);
    }

    #[tokio::test]
    async fn a_failing_range_fails_the_whole_listing() {
        let bucket = Bucket::with(keys(0..95));
        let boundaries = boundaries_of(&bucket.list(&[]).await.unwrap(), PAGE);
        for failing in [None, Some(key(9)), Some(key(49)), Some(key(89))] {
            *bucket.fail_after.lock().unwrap() = Some(failing.clone());
            let result = bucket.list(&boundaries).await;
            assert!(result.is_err(), "{failing:?}: {result:?}");
        }
    }

    #[tokio::test]
    async fn random_changes_never_lose_nor_duplicate_a_key() {
        // xorshift64: reproducible without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let n = (next() % 120) as usize;
            let before: BTreeSet<String> = (0..n).map(|_| key((next() % 1000) as usize)).collect();
            let mut after = before.clone();
            let changes = next() % 40;
            for _ in 0..changes {
                let k = key((next() % 1000) as usize);
                if next() % 2 == 0 {
                    after.insert(k);
                } else {
                    after.remove(&k);
                }
            }
            let requests = relist(
                before.into_iter().collect(),
                after.clone().into_iter().collect(),
            )
            .await;
            assert!(requests >= after.len().div_ceil(PAGE));
        }
    }
}
