//! What the tab keeps across reloads, in IndexedDB (database `bonfire`, object store `kv`, JSON
//! strings by key): the update it trained but has not delivered yet, and its contribution
//! history. IndexedDB is the one durable store a Web Worker can reach (it has no
//! `localStorage`). Every call is its own short transaction; the worker waits for its success
//! event before it goes on, so a pending update is on disk before it is announced.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransactionMode, WorkerGlobalScope};

const DATABASE: &str = "bonfire";
const STORE: &str = "kv";

/// An open IndexedDB database.
pub struct Store {
    db: IdbDatabase,
}

fn js_error(context: &str, value: JsValue) -> String {
    let text = value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"));
    format!("{context}: {text}")
}

/// Waits for `request`'s success (its result) or error event.
async fn settle(request: &IdbRequest, context: &str) -> Result<JsValue, String> {
    let (tx, rx) = oneshot::channel::<bool>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let on = |ok: bool| {
        let tx = tx.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(ok);
            }
        })
    };
    let (on_success, on_error) = (on(true), on(false));
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let ok = rx.await.unwrap_or(false);
    request.set_onsuccess(None);
    request.set_onerror(None);
    if ok {
        request.result().map_err(|e| js_error(context, e))
    } else {
        let why = request.error().ok().flatten().map(|e| e.message()).unwrap_or_else(|| "unknown error".into());
        Err(format!("{context}: {why}"))
    }
}

impl Store {
    /// Opens (creating on first use) the tab's database.
    pub async fn open() -> Result<Self, String> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let factory = scope
            .indexed_db()
            .map_err(|e| js_error("IndexedDB is blocked", e))?
            .ok_or("this browser offers no IndexedDB to workers")?;
        let open: IdbOpenDbRequest = factory.open_with_u32(DATABASE, 1).map_err(|e| js_error("opening IndexedDB", e))?;
        let upgrade = {
            let open = open.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Ok(db) = open.result() {
                    // Version 1 is the first version: the store does not exist yet.
                    let _ = db.unchecked_into::<IdbDatabase>().create_object_store(STORE);
                }
            })
        };
        open.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let db = settle(&open, "opening IndexedDB").await?;
        open.set_onupgradeneeded(None);
        Ok(Self { db: db.unchecked_into() })
    }

    fn request(&self, mode: IdbTransactionMode, make: impl FnOnce(&web_sys::IdbObjectStore) -> Result<IdbRequest, JsValue>) -> Result<IdbRequest, String> {
        let tx = self.db.transaction_with_str_and_mode(STORE, mode).map_err(|e| js_error("IndexedDB transaction", e))?;
        let store = tx.object_store(STORE).map_err(|e| js_error("IndexedDB store", e))?;
        make(&store).map_err(|e| js_error("IndexedDB request", e))
    }

    /// The value under `key`, if there is one that parses.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        let request = self.request(IdbTransactionMode::Readonly, |s| s.get(&JsValue::from_str(key)))?;
        let value = settle(&request, &format!("reading {key}")).await?;
        match value.as_string() {
            // A value this version cannot read is dropped rather than trusted.
            Some(text) => Ok(serde_json::from_str(&text).ok()),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), String> {
        let text = serde_json::to_string(value).map_err(|e| format!("encoding {key}: {e}"))?;
        let request = self.request(IdbTransactionMode::Readwrite, |s| s.put_with_key(&JsValue::from_str(&text), &JsValue::from_str(key)))?;
        settle(&request, &format!("writing {key}")).await.map(|_| ())
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        let request = self.request(IdbTransactionMode::Readwrite, |s| s.delete(&JsValue::from_str(key)))?;
        settle(&request, &format!("deleting {key}")).await.map(|_| ())
    }
}
