//! The compiled rule model: immutable after load and shared across requests.

use crate::operator::Operator;
use crate::transform::Transform;

macro_rules! var_kinds {
    ($( $v:ident = $name:literal, $coll:literal; )*) => {
        /// Every variable the engine knows. Unknown names are load errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum VarKind { $( $v, )* }
        impl VarKind {
            pub fn from_name(n: &str) -> Option<VarKind> {
                let up = n.to_ascii_uppercase();
                match up.as_str() { $( $name => Some(VarKind::$v), )* _ => None }
            }
            pub fn name(self) -> &'static str {
                match self { $( VarKind::$v => $name, )* }
            }
            /// Collections take a `:key` selector; scalars do not.
            pub fn is_collection(self) -> bool {
                match self { $( VarKind::$v => $coll, )* }
            }
        }
    };
}

var_kinds! {
    Args = "ARGS", true;
    ArgsNames = "ARGS_NAMES", true;
    ArgsGet = "ARGS_GET", true;
    ArgsGetNames = "ARGS_GET_NAMES", true;
    ArgsPost = "ARGS_POST", true;
    ArgsPostNames = "ARGS_POST_NAMES", true;
    ArgsCombinedSize = "ARGS_COMBINED_SIZE", false;
    RequestHeaders = "REQUEST_HEADERS", true;
    RequestHeadersNames = "REQUEST_HEADERS_NAMES", true;
    RequestCookies = "REQUEST_COOKIES", true;
    RequestCookiesNames = "REQUEST_COOKIES_NAMES", true;
    RequestUri = "REQUEST_URI", false;
    RequestUriRaw = "REQUEST_URI_RAW", false;
    RequestFilename = "REQUEST_FILENAME", false;
    RequestBasename = "REQUEST_BASENAME", false;
    RequestLine = "REQUEST_LINE", false;
    RequestMethod = "REQUEST_METHOD", false;
    RequestProtocol = "REQUEST_PROTOCOL", false;
    QueryString = "QUERY_STRING", false;
    RequestBody = "REQUEST_BODY", false;
    RequestBodyLength = "REQUEST_BODY_LENGTH", false;
    FullRequest = "FULL_REQUEST", false;
    FullRequestLength = "FULL_REQUEST_LENGTH", false;
    Files = "FILES", true;
    FilesNames = "FILES_NAMES", true;
    FilesSizes = "FILES_SIZES", true;
    FilesTmpNames = "FILES_TMPNAMES", true;
    FilesTmpContent = "FILES_TMP_CONTENT", true;
    FilesCombinedSize = "FILES_COMBINED_SIZE", false;
    MultipartFilename = "MULTIPART_FILENAME", false;
    MultipartName = "MULTIPART_NAME", false;
    MultipartPartHeaders = "MULTIPART_PART_HEADERS", true;
    MultipartStrictError = "MULTIPART_STRICT_ERROR", false;
    MultipartUnmatchedBoundary = "MULTIPART_UNMATCHED_BOUNDARY", false;
    MultipartBoundaryQuoted = "MULTIPART_BOUNDARY_QUOTED", false;
    MultipartBoundaryWhitespace = "MULTIPART_BOUNDARY_WHITESPACE", false;
    MultipartDataAfter = "MULTIPART_DATA_AFTER", false;
    MultipartDataBefore = "MULTIPART_DATA_BEFORE", false;
    MultipartHeaderFolding = "MULTIPART_HEADER_FOLDING", false;
    MultipartInvalidHeaderFolding = "MULTIPART_INVALID_HEADER_FOLDING", false;
    MultipartInvalidPart = "MULTIPART_INVALID_PART", false;
    MultipartInvalidQuoting = "MULTIPART_INVALID_QUOTING", false;
    MultipartLfLine = "MULTIPART_LF_LINE", false;
    MultipartMissingSemicolon = "MULTIPART_MISSING_SEMICOLON", false;
    MultipartCrlfLfLines = "MULTIPART_CRLF_LF_LINES", false;
    MultipartFileLimitExceeded = "MULTIPART_FILE_LIMIT_EXCEEDED", false;
    Xml = "XML", true;
    ReqbodyError = "REQBODY_ERROR", false;
    ReqbodyErrorMsg = "REQBODY_ERROR_MSG", false;
    ReqbodyProcessor = "REQBODY_PROCESSOR", false;
    ReqbodyProcessorError = "REQBODY_PROCESSOR_ERROR", false;
    ReqbodyProcessorErrorMsg = "REQBODY_PROCESSOR_ERROR_MSG", false;
    InboundDataError = "INBOUND_DATA_ERROR", false;
    OutboundDataError = "OUTBOUND_DATA_ERROR", false;
    UrlencodedError = "URLENCODED_ERROR", false;
    Tx = "TX", true;
    Ip = "IP", true;
    Global = "GLOBAL", true;
    Session = "SESSION", true;
    User = "USER", true;
    Resource = "RESOURCE", true;
    Env = "ENV", true;
    Rule = "RULE", true;
    MatchedVar = "MATCHED_VAR", false;
    MatchedVarName = "MATCHED_VAR_NAME", false;
    MatchedVars = "MATCHED_VARS", true;
    MatchedVarsNames = "MATCHED_VARS_NAMES", true;
    ResponseBody = "RESPONSE_BODY", false;
    ResponseHeaders = "RESPONSE_HEADERS", true;
    ResponseHeadersNames = "RESPONSE_HEADERS_NAMES", true;
    ResponseStatus = "RESPONSE_STATUS", false;
    ResponseProtocol = "RESPONSE_PROTOCOL", false;
    ResponseContentType = "RESPONSE_CONTENT_TYPE", false;
    ResponseContentLength = "RESPONSE_CONTENT_LENGTH", false;
    StatusLine = "STATUS_LINE", false;
    UniqueId = "UNIQUE_ID", false;
    RemoteAddr = "REMOTE_ADDR", false;
    RemotePort = "REMOTE_PORT", false;
    RemoteHost = "REMOTE_HOST", false;
    RemoteUser = "REMOTE_USER", false;
    ServerAddr = "SERVER_ADDR", false;
    ServerName = "SERVER_NAME", false;
    ServerPort = "SERVER_PORT", false;
    AuthType = "AUTH_TYPE", false;
    PathInfo = "PATH_INFO", false;
    Duration = "DURATION", false;
    HighestSeverity = "HIGHEST_SEVERITY", false;
    Time = "TIME", false;
    TimeEpoch = "TIME_EPOCH", false;
    TimeYear = "TIME_YEAR", false;
    TimeMon = "TIME_MON", false;
    TimeDay = "TIME_DAY", false;
    TimeHour = "TIME_HOUR", false;
    TimeMin = "TIME_MIN", false;
    TimeSec = "TIME_SEC", false;
    TimeWday = "TIME_WDAY", false;
    WebserverErrorLog = "WEBSERVER_ERROR_LOG", false;
}

/// Which entries of a collection a target selects.
#[derive(Debug, Clone)]
pub enum Selector {
    All,
    /// Lower-cased key (XML keeps its XPath as written).
    Key(String),
    Regex(regex::Regex),
}

impl Selector {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => k.eq_ignore_ascii_case(key),
            Selector::Regex(r) => r.is_match(key),
        }
    }
    /// Two selectors denote the same exclusion (used for `!ARGS:x` against `ARGS:x`).
    pub fn same_as(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, Selector::All) => true,
            (Selector::Key(a), Selector::Key(b)) => a.eq_ignore_ascii_case(b),
            (Selector::Regex(a), Selector::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: VarKind,
    pub selector: Selector,
    /// `&VAR`: the number of entries instead of their values.
    pub count: bool,
    /// `!VAR:key`: removes entries from the rule's other targets.
    pub exclude: bool,
    /// For `TX:name`: the name's TX slot; for `TX:/regex/`: the index of
    /// its selection in [`crate::txnames::TxNames::selections`]. Assigned
    /// when the rule set is built; [`NO_SLOT`] otherwise.
    pub slot: u32,
}

/// No TX slot: the variable is found by name.
pub const NO_SLOT: u32 = u32::MAX;

/// A string with `%{collection.key}` macros, expanded per transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroPart {
    Lit(String),
    /// A variable, its lower-cased key and, for `%{tx.name}`, the name's TX
    /// slot ([`NO_SLOT`] until the rule set assigns one).
    Var(VarKind, Option<String>, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    pub parts: Vec<MacroPart>,
}

impl MacroString {
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [MacroPart::Lit(s)] => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    Block,
    Deny,
    Drop,
    Allow(AllowScope),
    Redirect,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    All,
    Phase,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetVarOp {
    Set,
    Add,
    Sub,
    Delete,
}

#[derive(Debug, Clone)]
pub struct SetVar {
    pub collection: VarKind,
    pub key: MacroString,
    /// The TX slot of a literal key ([`NO_SLOT`]: found by name).
    pub key_slot: u32,
    pub op: SetVarOp,
    pub value: MacroString,
}

#[derive(Debug, Clone)]
pub enum Ctl {
    RuleRemoveById(Vec<(u64, u64)>),
    RuleRemoveByTag(String),
    RuleRemoveByMsg(String),
    RuleRemoveTargetById(Vec<(u64, u64)>, Vec<Target>),
    RuleRemoveTargetByTag(String, Vec<Target>),
    RuleRemoveTargetByMsg(String, Vec<Target>),
    RuleEngine(EngineMode),
    RequestBodyAccess(bool),
    ResponseBodyAccess(bool),
    RequestBodyProcessor(BodyProcessor),
    ForceRequestBodyVariable(bool),
    AuditEngine,
    AuditLogParts,
    RequestBodyLimit(usize),
    ParseXmlIntoArgs,
    HashEngine,
    Debug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    On,
    Off,
    DetectionOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl BodyProcessor {
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// Actions that run, in order, each time a link of a rule matches.
#[derive(Debug, Clone)]
pub enum RunAction {
    SetVar(SetVar),
    Ctl(Ctl),
    SetEnv(MacroString, MacroString),
}

/// One link of a rule (a rule without `chain` has exactly one).
#[derive(Debug, Clone)]
pub struct Link {
    pub targets: Vec<Target>,
    pub operator: Operator,
    pub transforms: Vec<Transform>,
    /// Interned id of `transforms`, keying the per-transaction transformation cache.
    pub tchain: u32,
    pub actions: Vec<RunAction>,
    pub capture: bool,
    pub multi_match: bool,
    pub line: usize,
    /// Slot in the prefilter of this link's transformation chain (set at
    /// load by [`crate::prefilter::Prefilter::build`]; `None`: always run).
    pub prefilter: Option<u32>,
}

/// A rule or SecAction (whose single link has no targets and always matches).
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: u64,
    pub phase: u8,
    pub links: Vec<Link>,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub log: bool,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub skip: u32,
    pub skip_after: Option<String>,
    pub file: String,
    pub line: usize,
}

/// An element of a phase's program: a rule or a marker to skip to.
#[derive(Debug, Clone)]
pub enum Item {
    Rule(Rule),
    Marker(String),
}
