//! The `ARGS` table the processors fill: arguments in arrival order with their origin, under
//! one `SecArgumentsLimit` shared by the query string and the body (v2's `add_argument`).

/// The `REQBODY_ERROR_MSG` ModSecurity v2 sets when an argument is dropped over the limit.
pub const ARGUMENTS_LIMIT_MSG: &str = "SecArgumentsLimit exceeded";

/// Where an argument came from; v2 builds `ARGS_GET` from [`ArgOrigin::QueryString`] and
/// `ARGS_POST` from [`ArgOrigin::Body`] only, so JSON arguments are in `ARGS` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgOrigin {
    /// The query string (`ARGS_GET`).
    QueryString,
    /// A urlencoded or multipart body (`ARGS_POST`).
    Body,
    /// A JSON body.
    Json,
}

/// One argument: name and value, decoded as the processor that found it decodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The name, as `ARGS_NAMES` yields it.
    pub name: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Its origin.
    pub origin: ArgOrigin,
}

/// The arguments of one request, limited as ModSecurity v2 limits its `arguments` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgList {
    args: Vec<Arg>,
    limit: usize,
    dropped: bool,
}

impl ArgList {
    /// An empty table that keeps at most `limit` arguments (`SecArgumentsLimit`).
    pub fn new(limit: usize) -> Self {
        ArgList {
            args: Vec::new(),
            limit,
            dropped: false,
        }
    }

    /// Adds an argument; `false` (and nothing added) when the table is full, which v2 reports
    /// as a request body error ([`ARGUMENTS_LIMIT_MSG`]) whatever the argument's origin.
    pub fn push(&mut self, name: Vec<u8>, value: Vec<u8>, origin: ArgOrigin) -> bool {
        if self.args.len() >= self.limit {
            self.dropped = true;
            return false;
        }
        self.args.push(Arg {
            name,
            value,
            origin,
        });
        true
    }

    /// Whether an argument was refused for the limit.
    pub fn limit_exceeded(&self) -> bool {
        self.dropped
    }

    /// Whether the table holds `limit` arguments already.
    pub fn is_full(&self) -> bool {
        self.args.len() >= self.limit
    }

    /// The limit this table was made with.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The arguments in arrival order.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// The arguments of one origin (`ARGS_GET`, `ARGS_POST`).
    pub fn of_origin(&self, origin: ArgOrigin) -> impl Iterator<Item = &Arg> {
        self.args.iter().filter(move |a| a.origin == origin)
    }

    /// Number of arguments held.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether no argument is held.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}
