//! Hand-written bindings for the few functions of libmodsecurity's C API the
//! reference harness calls, resolved with `dlopen` so that building the
//! workspace never needs the C library (see `Api::get`).

use std::ffi::{c_char, c_int, c_uchar, c_void};
use std::sync::OnceLock;

/// `ModSecurity`, `RulesSet` and `Transaction` are opaque C++ objects.
#[repr(C)]
pub struct ModSecurity {
    _p: [u8; 0],
}
#[repr(C)]
pub struct RulesSet {
    _p: [u8; 0],
}
#[repr(C)]
pub struct Transaction {
    _p: [u8; 0],
}

/// `ModSecurityIntervention` from `modsecurity/intervention.h`.
#[repr(C)]
pub struct Intervention {
    pub status: c_int,
    pub pause: c_int,
    pub url: *mut c_char,
    pub log: *mut c_char,
    pub disruptive: c_int,
}

impl Default for Intervention {
    fn default() -> Self {
        Intervention {
            status: 200,
            pause: 0,
            url: std::ptr::null_mut(),
            log: std::ptr::null_mut(),
            disruptive: 0,
        }
    }
}

pub type LogCb = unsafe extern "C" fn(data: *mut c_void, msg: *const c_void);

/// Function pointers into the loaded library (kept alive by `_lib`).
pub struct Api {
    pub init: unsafe extern "C" fn() -> *mut ModSecurity,
    pub cleanup: unsafe extern "C" fn(*mut ModSecurity),
    pub set_log_cb: unsafe extern "C" fn(*mut ModSecurity, LogCb),
    pub set_connector_info: unsafe extern "C" fn(*mut ModSecurity, *const c_char),
    pub create_rules_set: unsafe extern "C" fn() -> *mut RulesSet,
    pub rules_add: unsafe extern "C" fn(*mut RulesSet, *const c_char, *mut *const c_char) -> c_int,
    pub rules_add_file:
        unsafe extern "C" fn(*mut RulesSet, *const c_char, *mut *const c_char) -> c_int,
    pub rules_cleanup: unsafe extern "C" fn(*mut RulesSet) -> c_int,
    pub new_transaction:
        unsafe extern "C" fn(*mut ModSecurity, *mut RulesSet, *mut c_void) -> *mut Transaction,
    pub process_connection:
        unsafe extern "C" fn(*mut Transaction, *const c_char, c_int, *const c_char, c_int) -> c_int,
    pub process_uri: unsafe extern "C" fn(
        *mut Transaction,
        *const c_char,
        *const c_char,
        *const c_char,
    ) -> c_int,
    pub add_n_request_header: unsafe extern "C" fn(
        *mut Transaction,
        *const c_uchar,
        usize,
        *const c_uchar,
        usize,
    ) -> c_int,
    pub process_request_headers: unsafe extern "C" fn(*mut Transaction) -> c_int,
    pub append_request_body: unsafe extern "C" fn(*mut Transaction, *const c_uchar, usize) -> c_int,
    pub process_request_body: unsafe extern "C" fn(*mut Transaction) -> c_int,
    pub add_n_response_header: unsafe extern "C" fn(
        *mut Transaction,
        *const c_uchar,
        usize,
        *const c_uchar,
        usize,
    ) -> c_int,
    pub process_response_headers:
        unsafe extern "C" fn(*mut Transaction, c_int, *const c_char) -> c_int,
    pub append_response_body:
        unsafe extern "C" fn(*mut Transaction, *const c_uchar, usize) -> c_int,
    pub process_response_body: unsafe extern "C" fn(*mut Transaction) -> c_int,
    pub intervention: unsafe extern "C" fn(*mut Transaction, *mut Intervention) -> c_int,
    pub process_logging: unsafe extern "C" fn(*mut Transaction) -> c_int,
    pub transaction_cleanup: unsafe extern "C" fn(*mut Transaction),
    _lib: libloading::Library,
}

extern "C" {
    /// The C library's `free`, for the strings libmodsecurity `strdup`s into
    /// an intervention (std already links libc).
    pub fn free(p: *mut c_void);
}

/// Library names tried in order; `MODSEC_LIB` overrides them.
const NAMES: &[&str] = &["libmodsecurity.so.3", "libmodsecurity.so"];

impl Api {
    /// The process-wide bindings, or why libmodsecurity could not be loaded.
    pub fn get() -> Result<&'static Api, String> {
        static API: OnceLock<Result<Api, String>> = OnceLock::new();
        API.get_or_init(Api::load).as_ref().map_err(Clone::clone)
    }

    fn load() -> Result<Api, String> {
        let names: Vec<String> = match std::env::var("MODSEC_LIB") {
            Ok(n) => vec![n],
            Err(_) => NAMES.iter().map(|s| s.to_string()).collect(),
        };
        let mut last = String::new();
        for n in &names {
            // SAFETY: loading libmodsecurity runs its C++ static initialisers,
            // which have no preconditions.
            match unsafe { libloading::Library::new(n) } {
                Ok(lib) => return Api::bind(lib),
                Err(e) => last = format!("{n}: {e}"),
            }
        }
        Err(last)
    }

    fn bind(lib: libloading::Library) -> Result<Api, String> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the declared type matches the prototype in the
                // libmodsecurity v3 headers (modsecurity.h, rules_set.h,
                // transaction.h); the pointer is used only while `_lib` lives.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        Ok(Api {
            init: sym!("msc_init"),
            cleanup: sym!("msc_cleanup"),
            set_log_cb: sym!("msc_set_log_cb"),
            set_connector_info: sym!("msc_set_connector_info"),
            create_rules_set: sym!("msc_create_rules_set"),
            rules_add: sym!("msc_rules_add"),
            rules_add_file: sym!("msc_rules_add_file"),
            rules_cleanup: sym!("msc_rules_cleanup"),
            new_transaction: sym!("msc_new_transaction"),
            process_connection: sym!("msc_process_connection"),
            process_uri: sym!("msc_process_uri"),
            add_n_request_header: sym!("msc_add_n_request_header"),
            process_request_headers: sym!("msc_process_request_headers"),
            append_request_body: sym!("msc_append_request_body"),
            process_request_body: sym!("msc_process_request_body"),
            add_n_response_header: sym!("msc_add_n_response_header"),
            process_response_headers: sym!("msc_process_response_headers"),
            append_response_body: sym!("msc_append_response_body"),
            process_response_body: sym!("msc_process_response_body"),
            intervention: sym!("msc_intervention"),
            process_logging: sym!("msc_process_logging"),
            transaction_cleanup: sym!("msc_transaction_cleanup"),
            _lib: lib,
        })
    }
}
