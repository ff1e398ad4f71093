//! Sorting without core's stable-sort stack scratch. `slice::sort` and
//! `sort_by` (driftsort) keep a 4 KiB buffer on the stack, half of
//! binfmt_wasm's 8 KiB user stack (see `tools/test/wasm-guest.sh`); these
//! give the same (stable) order with the work on the heap instead.

use alloc::vec::Vec;
use core::cmp::Ordering;

/// Sorts `v` stably by `cmp` (equal elements keep their order), as
/// `slice::sort_by` does, with O(n) heap and no large stack buffer: an
/// unstable sort of positions, ties broken by position, then one move of
/// every element.
pub fn sort_by<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_unstable_by(|&a, &b| cmp(&v[a], &v[b]).then(a.cmp(&b)));
    let mut items: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(order.iter().filter_map(|&i| items[i].take()));
}

/// Sorts `v` stably in ascending order, as `slice::sort` does (see [`sort_by`]).
pub fn sort<T: Ord>(v: &mut Vec<T>) {
    sort_by(v, T::cmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably_like_core() {
        // Pairs compared by their first field only: equal keys keep their order.
        let mut seed = 12345u32;
        for len in [0usize, 1, 2, 7, 20, 33, 100, 1000] {
            let v: Vec<(u8, u32)> = (0..len as u32)
                .map(|i| {
                    seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                    ((seed >> 16) as u8 % 7, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|a| a.0);
            let mut got = v.clone();
            sort_by(&mut got, |a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "len {len}");
            let mut want = v.clone();
            want.sort();
            let mut got = v;
            sort(&mut got);
            assert_eq!(got, want, "len {len}");
        }
    }
}
