//! Locks that outlive a panic elsewhere: a poisoned lock is used as it is.
//! Everything the supervisor keeps behind a lock (counters, windows, maps,
//! a swapped `Arc`) is whole between statements, so a panic in another task
//! leaves nothing half-written; refusing every later request would be worse.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
