//! Engine settings from `Sec…` directives (`SecRuleEngine`, body access and limits, …), with
//! the defaults a gateway wants when the rule files leave them unset.

/// `SecRuleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Rules run and their disruptive actions are enforced.
    On,
    /// Rules run, decisions are recorded, nothing is blocked.
    DetectionOnly,
    /// Rules do not run.
    Off,
}

impl Mode {
    /// Parses `On`, `Off`, `DetectionOnly`.
    pub fn parse(v: &str) -> Result<Mode, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "on" => Ok(Mode::On),
            "off" => Ok(Mode::Off),
            "detectiononly" => Ok(Mode::DetectionOnly),
            _ => Err(format!("{v:?} is not On, Off or DetectionOnly")),
        }
    }
}

/// A request body processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
    /// JSON.
    Json,
    /// XML.
    Xml,
}

impl BodyProcessor {
    /// Parses `URLENCODED`, `MULTIPART`, `JSON`, `XML`.
    pub fn parse(v: &str) -> Result<BodyProcessor, String> {
        match v.trim().to_ascii_uppercase().as_str() {
            "URLENCODED" => Ok(BodyProcessor::UrlEncoded),
            "MULTIPART" => Ok(BodyProcessor::Multipart),
            "JSON" => Ok(BodyProcessor::Json),
            "XML" => Ok(BodyProcessor::Xml),
            _ => Err(format!(
                "body processor {v:?} is not URLENCODED, MULTIPART, JSON or XML"
            )),
        }
    }

    /// The name `REQBODY_PROCESSOR` holds.
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }

    /// The processor ModSecurity (with its recommended configuration's rules 200000 and
    /// 200001, built in here) picks for a `Content-Type`.
    pub fn for_content_type(ct: &[u8]) -> Option<BodyProcessor> {
        let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime == "application/x-www-form-urlencoded" {
            Some(BodyProcessor::UrlEncoded)
        } else if mime.starts_with("multipart/form-data") {
            Some(BodyProcessor::Multipart)
        } else if mime == "application/json" || mime.ends_with("+json") {
            Some(BodyProcessor::Json)
        } else if mime == "text/xml" || mime == "application/xml" || mime.ends_with("+xml") {
            Some(BodyProcessor::Xml)
        } else {
            None
        }
    }
}

/// What to do with a body over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAction {
    /// Refuse the transaction (413 for requests).
    Reject,
    /// Inspect the first `limit` bytes.
    ProcessPartial,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SecRuleEngine` (On when the files do not say).
    pub mode: Mode,
    /// `SecRequestBodyAccess` (On).
    pub request_body_access: bool,
    /// `SecResponseBodyAccess` (On).
    pub response_body_access: bool,
    /// `SecRequestBodyLimit` (13107200).
    pub request_body_limit: usize,
    /// `SecRequestBodyNoFilesLimit` (131072).
    pub request_body_no_files_limit: usize,
    /// `SecRequestBodyLimitAction` (Reject).
    pub request_body_limit_action: LimitAction,
    /// `SecResponseBodyLimit` (524288).
    pub response_body_limit: usize,
    /// `SecResponseBodyLimitAction` (ProcessPartial).
    pub response_body_limit_action: LimitAction,
    /// `SecResponseBodyMimeType` (text/plain text/html text/xml).
    pub response_mime_types: Vec<String>,
    /// `SecArgumentsLimit` (1000).
    pub arguments_limit: usize,
    /// `SecRequestBodyJsonDepthLimit` (512).
    pub json_depth_limit: usize,
    /// `SecUploadFileLimit` (100).
    pub upload_file_limit: usize,
    /// `SecArgumentSeparator` (`&`).
    pub argument_separator: u8,
    /// `SecComponentSignature` values.
    pub component_signatures: Vec<String>,
    /// Decoders run before the rules (`[waf] decode`; none by default).
    pub decoding: super::Decoding,
    /// `SecCollectionTimeout` in seconds (3600).
    pub collection_timeout: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::On,
            request_body_access: true,
            response_body_access: true,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 131_072,
            request_body_limit_action: LimitAction::Reject,
            response_body_limit: 524_288,
            response_body_limit_action: LimitAction::ProcessPartial,
            response_mime_types: vec!["text/plain".into(), "text/html".into(), "text/xml".into()],
            arguments_limit: 1000,
            json_depth_limit: 512,
            upload_file_limit: 100,
            argument_separator: b'&',
            component_signatures: Vec::new(),
            collection_timeout: 3600,
            decoding: super::Decoding::default(),
        }
    }
}

impl Settings {
    /// Applies one setting directive; `Ok(false)` when it has no effect in this engine (audit
    /// and debug logs, temporary folders: the gateway's own events and spool replace them).
    pub fn apply(&mut self, name: &str, args: &[String]) -> Result<bool, String> {
        let first = args.first().map(String::as_str).unwrap_or("");
        let on = || match first.to_ascii_lowercase().as_str() {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(format!("{name} {first:?}: expected On or Off")),
        };
        let num = || {
            first
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("{name} {first:?}: expected a number"))
        };
        let action = || match first.to_ascii_lowercase().as_str() {
            "reject" => Ok(LimitAction::Reject),
            "processpartial" => Ok(LimitAction::ProcessPartial),
            _ => Err(format!(
                "{name} {first:?}: expected Reject or ProcessPartial"
            )),
        };
        match name {
            "SecRuleEngine" => self.mode = Mode::parse(first)?,
            "SecRequestBodyAccess" => self.request_body_access = on()?,
            "SecResponseBodyAccess" => self.response_body_access = on()?,
            "SecRequestBodyLimit" => self.request_body_limit = num()?,
            "SecRequestBodyNoFilesLimit" => self.request_body_no_files_limit = num()?,
            "SecRequestBodyLimitAction" => self.request_body_limit_action = action()?,
            "SecResponseBodyLimit" => self.response_body_limit = num()?,
            "SecResponseBodyLimitAction" => self.response_body_limit_action = action()?,
            "SecResponseBodyMimeType" => self.response_mime_types.extend(
                args.iter()
                    .flat_map(|a| a.split_whitespace())
                    .map(str::to_ascii_lowercase),
            ),
            "SecResponseBodyMimeTypesClear" => self.response_mime_types.clear(),
            "SecArgumentsLimit" => self.arguments_limit = num()?,
            "SecRequestBodyJsonDepthLimit" => self.json_depth_limit = num()?,
            "SecUploadFileLimit" => self.upload_file_limit = num()?,
            "SecArgumentSeparator" => {
                self.argument_separator = *first
                    .as_bytes()
                    .first()
                    .ok_or_else(|| format!("{name}: expected one character"))?
            }
            "SecComponentSignature" => self.component_signatures.push(first.to_string()),
            "SecCollectionTimeout" => self.collection_timeout = num()? as u64,
            _ => return Ok(false),
        }
        Ok(true)
    }
}
