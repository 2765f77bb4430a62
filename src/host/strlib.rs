//! The library functions whose work the instruction hook cannot see, made to count.
//!
//! Lua's C library runs without the hook: one `string.find` with a backtracking pattern on a
//! long subject runs for minutes, and `table.insert` on a table whose `__len` lies loops in C.
//! So in the sandbox:
//! - `string.find`, `match`, `gmatch` and `gsub` use the matcher below, a port of Lua 5.4's
//!   (`lstrlib.c`, same results and error messages) that counts its steps and charges them to the
//!   callback's budget every [`STEP_CHECK`] steps; plain `find` is a linear-time search.
//! - `string.rep` refuses a result larger than the memory limit before building it (a memory
//!   trip), and charges what it builds.
//! - `string.format`, `upper`, `lower`, `reverse` and `table.concat`, `table.sort` check the
//!   callback's CPU time before running on large inputs, so a loop of them is cut short at the
//!   next call; one call is bounded by the memory limit.
//! - `table.insert`, `table.remove` and `table.move` are written in Lua, so their loops are
//!   counted like any other.

use std::rc::Rc;

use memchr::memmem;
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::limits::{Guard, TripKind};
use super::lua_values::lua_type;

/// Matcher steps between two checks of the budget.
const STEP_CHECK: u64 = 1 << 14;
/// Bytes a library call may copy for one instruction's worth of budget (a copy is cheap per byte).
const BYTES_PER_STEP: u64 = 16;
/// Inputs from which a call is worth checking the clock for.
const LARGE_INPUT: u64 = 64 * 1024;

const MAXCCALLS: usize = 200;
const MAXCAPTURES: usize = 32;
const CAP_UNFINISHED: isize = -1;
const CAP_POSITION: isize = -2;
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Why a match stopped without an answer.
enum Fail {
    /// A malformed pattern or bad capture: an ordinary Lua error.
    Error(String),
    /// The budget ran out (the guard has tripped).
    Tripped,
}

fn fail<T>(message: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Error(message.into()))
}

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: usize,
    level: usize,
    capture: [(usize, isize); MAXCAPTURES],
    steps: u64,
    guard: &'a Guard,
}

enum Capture<'a> {
    Bytes(&'a [u8]),
    Position(usize),
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], guard: &'a Guard) -> Matcher<'a> {
        Matcher {
            src,
            pat,
            depth: MAXCCALLS,
            level: 0,
            capture: [(0, 0); MAXCAPTURES],
            steps: 0,
            guard,
        }
    }

    /// Ready for a match at a new position.
    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAXCCALLS;
    }

    fn step(&mut self) -> Result<(), Fail> {
        self.steps += 1;
        if self.steps.is_multiple_of(STEP_CHECK) && !self.guard.charge(STEP_CHECK) {
            return Err(Fail::Tripped);
        }
        Ok(())
    }

    /// Charges the steps not charged yet.
    fn settle(&mut self) -> Result<(), Fail> {
        let rest = self.steps % STEP_CHECK;
        self.steps -= rest;
        if self.guard.charge(rest) {
            Ok(())
        } else {
            Err(Fail::Tripped)
        }
    }

    /// The pattern byte at `p`, or 0 past its end (as C sees the terminating NUL).
    fn pc(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    fn sc(&self, s: usize) -> u8 {
        self.src.get(s).copied().unwrap_or(0)
    }

    fn class_end(&self, mut p: usize) -> Result<usize, Fail> {
        let c = self.pc(p);
        p += 1;
        match c {
            b'%' => {
                if p >= self.pat.len() {
                    return fail("malformed pattern (ends with '%')");
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.pc(p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pat.len() {
                        return fail("malformed pattern (missing ']')");
                    }
                    let c = self.pat[p];
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.pc(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// `[...]` at `p` (the `[`), ending at `ec` (the `]`).
    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.pc(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            let here = self.pc(p);
            if here == b'%' {
                p += 1;
                if match_class(c, self.pc(p)) {
                    return sig;
                }
            } else if self.pc(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.pc(p - 2) <= c && c <= self.pc(p) {
                    return sig;
                }
            } else if here == c {
                return sig;
            }
        }
        !sig
    }

    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else { return false };
        match self.pc(p) {
            b'.' => true,
            b'%' => match_class(c, self.pc(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            other => other == c,
        }
    }

    fn balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        if p + 1 >= self.pat.len() {
            return fail("malformed pattern (missing arguments to '%b')");
        }
        if s >= self.src.len() || self.src[s] != self.pat[p] {
            return Ok(None);
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        let mut depth = 1;
        let mut s = s;
        loop {
            s += 1;
            if s >= self.src.len() {
                return Ok(None);
            }
            self.step()?;
            let c = self.src[s];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(s + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, Fail> {
        let mut i = 0;
        while self.single(s + i, p, ep) {
            i += 1;
            self.step()?;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Result<Option<usize>, Fail> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: isize) -> Result<Option<usize>, Fail> {
        if self.level >= MAXCAPTURES {
            return fail("too many captures");
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.level -= 1;
        }
        Ok(end)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        let Some(l) = (0..self.level).rev().find(|&l| self.capture[l].1 == CAP_UNFINISHED) else {
            return fail("invalid pattern capture");
        };
        self.capture[l].1 = (s - self.capture[l].0) as isize;
        let end = self.do_match(s, p)?;
        if end.is_none() {
            self.capture[l].1 = CAP_UNFINISHED;
        }
        Ok(end)
    }

    fn check_capture(&self, digit: u8) -> Result<usize, Fail> {
        let l = digit as i32 - b'1' as i32;
        if l < 0 || l as usize >= self.level || self.capture[l as usize].1 == CAP_UNFINISHED {
            return fail(format!("invalid capture index %{}", l + 1));
        }
        Ok(l as usize)
    }

    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>, Fail> {
        let l = self.check_capture(digit)?;
        let (init, len) = self.capture[l];
        // A position capture has no text: like C's `(size_t)-2`, it never fits.
        let Ok(len) = usize::try_from(len) else { return Ok(None) };
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, Fail> {
        if self.depth == 0 {
            return fail("pattern too complex");
        }
        self.depth -= 1;
        let end = self.match_here(s, p)?;
        self.depth += 1;
        Ok(end)
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, Fail> {
        loop {
            self.step()?;
            if p == self.pat.len() {
                return Ok(Some(s));
            }
            match self.pat[p] {
                b'(' => {
                    return if self.pc(p + 1) == b')' {
                        self.start_capture(s, p + 2, CAP_POSITION)
                    } else {
                        self.start_capture(s, p + 1, CAP_UNFINISHED)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => return Ok((s == self.src.len()).then_some(s)),
                b'%' if self.pc(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => return Ok(None),
                },
                b'%' if self.pc(p + 1) == b'f' => {
                    p += 2;
                    if self.pc(p) != b'[' {
                        return fail("missing '[' after '%f' in pattern");
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    if !self.bracket(previous, p, ep - 1) && self.bracket(self.sc(s), p, ep - 1) {
                        p = ep;
                    } else {
                        return Ok(None);
                    }
                }
                b'%' if self.pc(p + 1).is_ascii_digit() => match self.match_capture(s, self.pc(p + 1))? {
                    Some(end) => {
                        s = end;
                        p += 2;
                    }
                    None => return Ok(None),
                },
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = self.pc(ep);
                    if !self.single(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        b'?' => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                return Ok(Some(end));
                            }
                            p = ep + 1;
                        }
                        b'+' => return self.max_expand(s + 1, p, ep),
                        b'*' => return self.max_expand(s, p, ep),
                        b'-' => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    fn get_capture(&self, i: usize, s: usize, e: usize) -> Result<Capture<'a>, Fail> {
        if i >= self.level {
            if i != 0 {
                return fail(format!("invalid capture index %{}", i + 1));
            }
            return Ok(Capture::Bytes(&self.src[s..e]));
        }
        let (init, len) = self.capture[i];
        match len {
            CAP_UNFINISHED => fail("unfinished capture"),
            CAP_POSITION => Ok(Capture::Position(init + 1)),
            len => Ok(Capture::Bytes(&self.src[init..init + len as usize])),
        }
    }

    /// The captures of a match of `s..e` (the whole match when the pattern has none and `whole`).
    fn captures(&self, lua: &Lua, s: usize, e: usize, whole: bool) -> Result<Vec<Value>, Outcome> {
        let count = if self.level == 0 && whole { 1 } else { self.level };
        (0..count)
            .map(|i| match self.get_capture(i, s, e) {
                Ok(capture) => capture_value(lua, capture).map_err(Outcome::Raise),
                Err(fail) => Err(Outcome::from(fail)),
            })
            .collect()
    }
}

fn capture_value(lua: &Lua, capture: Capture<'_>) -> mlua::Result<Value> {
    Ok(match capture {
        Capture::Bytes(bytes) => Value::String(lua.create_string(bytes)?),
        Capture::Position(at) => Value::Integer(at as i64),
    })
}

/// `%a`, `%d`, ... in the C locale; any other byte stands for itself.
fn match_class(c: u8, class: u8) -> bool {
    let found = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !found
    } else {
        found
    }
}

/// How a library call ended, short of returning its values.
enum Outcome {
    /// An ordinary error: the Lua wrapper raises this message (a string, as the C library does).
    Error(String),
    /// Raised as is (a trip, or an error from a replacement function).
    Raise(mlua::Error),
}

impl From<Fail> for Outcome {
    fn from(fail: Fail) -> Outcome {
        match fail {
            Fail::Error(message) => Outcome::Error(message),
            Fail::Tripped => Outcome::Raise(mlua::Error::runtime(TripKind::Cpu.describe())),
        }
    }
}

type Answer = Result<Vec<Value>, Outcome>;

/// What the Lua wrappers receive: `true, values...` or `false, message`.
fn reply(lua: &Lua, answer: Answer) -> mlua::Result<MultiValue> {
    match answer {
        Ok(values) => Ok(std::iter::once(Value::Boolean(true)).chain(values).collect()),
        Err(Outcome::Error(message)) => Ok(MultiValue::from_vec(vec![
            Value::Boolean(false),
            Value::String(lua.create_string(format!("{}{message}", super::api::location(lua)))?),
        ])),
        Err(Outcome::Raise(err)) => Err(err),
    }
}

fn bad_argument(n: usize, func: &str, expected: &str, got: &Value) -> Outcome {
    Outcome::Error(format!(
        "bad argument #{n} to '{func}' ({expected} expected, got {})",
        if matches!(got, Value::Nil) {
            "no value"
        } else {
            lua_type(got)
        }
    ))
}

fn string_arg(lua: &Lua, args: &MultiValue, i: usize, func: &str) -> Result<mlua::String, Outcome> {
    let value = args.get(i).cloned().unwrap_or(Value::Nil);
    match &value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(_) | Value::Number(_) => match lua.coerce_string(value.clone()) {
            Ok(Some(s)) => Ok(s),
            _ => Err(bad_argument(i + 1, func, "string", &value)),
        },
        _ => Err(bad_argument(i + 1, func, "string", &value)),
    }
}

fn opt_integer(args: &MultiValue, i: usize, func: &str, default: i64) -> Result<i64, Outcome> {
    match args.get(i) {
        None | Some(Value::Nil) => Ok(default),
        Some(Value::Integer(n)) => Ok(*n),
        Some(Value::Number(n)) if n.fract() == 0.0 && *n >= -(2f64.powi(63)) && *n < 2f64.powi(63) => Ok(*n as i64),
        Some(Value::Number(_)) => Err(Outcome::Error(format!(
            "bad argument #{} to '{func}' (number has no integer representation)",
            i + 1
        ))),
        Some(other) => Err(bad_argument(i + 1, func, "number", other)),
    }
}

/// Lua's `posrelatI`: a 1-based start position, negative counting from the end.
fn start_position(pos: i64, len: usize) -> usize {
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos.unsigned_abs() > len as u64 {
        1
    } else {
        len - pos.unsigned_abs() as usize + 1
    }
}

fn find(lua: &Lua, guard: &Guard, args: &MultiValue, func: &str, find: bool) -> Answer {
    let subject = string_arg(lua, args, 0, func)?;
    let pattern = string_arg(lua, args, 1, func)?;
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let init = start_position(opt_integer(args, 2, func, 1)?, src.len()) - 1;
    if init > src.len() {
        return Ok(vec![Value::Nil]);
    }
    let plain = args
        .get(3)
        .is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || !pat.iter().any(|b| SPECIALS.contains(b))) {
        guard
            .charge_or_raise((src.len() - init) as u64 / BYTES_PER_STEP)
            .map_err(Outcome::Raise)?;
        return Ok(match memmem::find(&src[init..], &pat) {
            Some(at) => vec![
                Value::Integer((init + at + 1) as i64),
                Value::Integer((init + at + pat.len()) as i64),
            ],
            None => vec![Value::Nil],
        });
    }
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, guard);
    let mut start = init;
    let found = loop {
        m.reset();
        if let Some(end) = m.do_match(start, 0)? {
            break Some(end);
        }
        start += 1;
        if anchor || start > src.len() {
            break None;
        }
    };
    m.settle()?;
    let Some(end) = found else { return Ok(vec![Value::Nil]) };
    if find {
        let mut values = vec![Value::Integer(start as i64 + 1), Value::Integer(end as i64)];
        values.extend(m.captures(lua, start, end, false)?);
        Ok(values)
    } else {
        m.captures(lua, start, end, true)
    }
}

/// One step of a `gmatch` iteration: the next match at or after `*from`.
fn gmatch_next(lua: &Lua, guard: &Guard, state: &mut GmatchState) -> Answer {
    let (src, pat) = (state.subject.as_bytes(), state.pattern.as_bytes());
    let mut m = Matcher::new(&src, &pat, guard);
    let mut start = state.from;
    while start <= src.len() {
        m.reset();
        if let Some(end) = m.do_match(start, 0)? {
            if Some(end) != state.last_match {
                m.settle()?;
                state.from = end;
                state.last_match = Some(end);
                return m.captures(lua, start, end, true);
            }
        }
        start += 1;
    }
    m.settle()?;
    state.from = start;
    Ok(vec![Value::Nil])
}

struct GmatchState {
    subject: mlua::String,
    pattern: mlua::String,
    from: usize,
    last_match: Option<usize>,
}

fn gsub(lua: &Lua, guard: &Guard, args: &MultiValue) -> Answer {
    const FUNC: &str = "gsub";
    let subject = string_arg(lua, args, 0, FUNC)?;
    let pattern = string_arg(lua, args, 1, FUNC)?;
    let replacement = args.get(2).cloned().unwrap_or(Value::Nil);
    let (src, pat) = (subject.as_bytes(), pattern.as_bytes());
    let max = opt_integer(args, 3, FUNC, src.len() as i64 + 1)?;
    if !matches!(
        replacement,
        Value::Integer(_) | Value::Number(_) | Value::String(_) | Value::Function(_) | Value::Table(_)
    ) {
        return Err(bad_argument(3, FUNC, "string/function/table", &replacement));
    }
    let template = match &replacement {
        Value::Integer(_) | Value::Number(_) | Value::String(_) => {
            Some(string_arg(lua, args, 2, FUNC)?.as_bytes().to_vec())
        }
        _ => None,
    };
    let (anchor, pat) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    let mut m = Matcher::new(&src, pat, guard);
    let mut out: Vec<u8> = Vec::new();
    let (mut at, mut count, mut changed, mut last_match) = (0usize, 0i64, false, None);
    while count < max {
        m.reset();
        match m.do_match(at, 0)? {
            Some(end) if Some(end) != last_match => {
                count += 1;
                m.settle()?;
                changed |= add_value(lua, &m, &mut out, at, end, &replacement, template.as_deref())?;
                at = end;
                last_match = Some(end);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if out.len() > guard.memory_limit() {
            guard.trip(TripKind::Memory);
            return Err(Outcome::Raise(mlua::Error::runtime(TripKind::Memory.describe())));
        }
        if anchor {
            break;
        }
    }
    m.settle()?;
    guard
        .charge_or_raise(out.len() as u64 / BYTES_PER_STEP)
        .map_err(Outcome::Raise)?;
    let result = if changed {
        out.extend_from_slice(&src[at..]);
        Value::String(lua.create_string(&out).map_err(Outcome::Raise)?)
    } else {
        Value::String(subject.clone())
    };
    Ok(vec![result, Value::Integer(count)])
}

/// Appends the replacement of the match `s..e`; false when the original text was kept.
fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    replacement: &Value,
    template: Option<&[u8]>,
) -> Result<bool, Outcome> {
    if let Some(template) = template {
        let mut i = 0;
        while i < template.len() {
            let c = template[i];
            i += 1;
            if c != b'%' {
                out.push(c);
                continue;
            }
            let d = template.get(i).copied().unwrap_or(0);
            i += 1;
            match d {
                b'%' => out.push(b'%'),
                b'0' => out.extend_from_slice(&m.src[s..e]),
                b'1'..=b'9' => match m.get_capture((d - b'1') as usize, s, e)? {
                    Capture::Bytes(bytes) => out.extend_from_slice(bytes),
                    Capture::Position(at) => out.extend_from_slice(at.to_string().as_bytes()),
                },
                _ => return Err(Outcome::Error("invalid use of '%' in replacement string".into())),
            }
        }
        return Ok(true);
    }
    let value = match replacement {
        Value::Function(f) => {
            let captures = m.captures(lua, s, e, true)?;
            f.call::<Value>(MultiValue::from_vec(captures))
                .map_err(Outcome::Raise)?
        }
        Value::Table(t) => {
            let key = capture_value(lua, m.get_capture(0, s, e)?).map_err(Outcome::Raise)?;
            t.get::<Value>(key).map_err(Outcome::Raise)?
        }
        _ => unreachable!("checked by gsub"),
    };
    match value {
        Value::Nil | Value::Boolean(false) => {
            out.extend_from_slice(&m.src[s..e]);
            Ok(false)
        }
        Value::String(text) => {
            out.extend_from_slice(&text.as_bytes());
            Ok(true)
        }
        number @ (Value::Integer(_) | Value::Number(_)) => {
            let text = lua.coerce_string(number).map_err(Outcome::Raise)?;
            out.extend_from_slice(&text.map(|t| t.as_bytes().to_vec()).unwrap_or_default());
            Ok(true)
        }
        other => Err(Outcome::Error(format!(
            "invalid replacement value (a {})",
            lua_type(&other)
        ))),
    }
}

/// `string.rep(s, n [, sep])`, refusing a result larger than the memory limit before building it.
fn rep(lua: &Lua, guard: &Guard, args: &MultiValue) -> Answer {
    const FUNC: &str = "rep";
    let s = string_arg(lua, args, 0, FUNC)?;
    let n = match args.get(1) {
        None | Some(Value::Nil) => return Err(bad_argument(2, FUNC, "number", &Value::Nil)),
        _ => opt_integer(args, 1, FUNC, 0)?,
    };
    let sep = match args.get(2) {
        None | Some(Value::Nil) => None,
        _ => Some(string_arg(lua, args, 2, FUNC)?),
    };
    let (s, sep) = (s.as_bytes(), sep.as_ref().map(|sep| sep.as_bytes()));
    let sep: &[u8] = sep.as_deref().unwrap_or(&[]);
    if n <= 0 || (s.is_empty() && sep.is_empty()) {
        return Ok(vec![Value::String(lua.create_string("").map_err(Outcome::Raise)?)]);
    }
    let n = n as u64;
    let total = (s.len() as u64)
        .saturating_mul(n)
        .saturating_add((sep.len() as u64).saturating_mul(n - 1));
    if total > guard.memory_limit() as u64 {
        guard.trip(TripKind::Memory);
        return Err(Outcome::Raise(mlua::Error::runtime(TripKind::Memory.describe())));
    }
    guard.charge_or_raise(total / BYTES_PER_STEP).map_err(Outcome::Raise)?;
    let mut out = Vec::with_capacity(total as usize);
    for i in 0..n {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&s);
    }
    Ok(vec![Value::String(lua.create_string(&out).map_err(Outcome::Raise)?)])
}

/// Total length of the strings among `values` and the number of values, for pricing a call.
fn input_size(values: &MultiValue) -> u64 {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.as_bytes().len() as u64,
            Value::Table(t) => t.raw_len() as u64 * BYTES_PER_STEP,
            _ => 0,
        })
        .sum()
}

/// Installs the replacements into `string` and `table` (see the module's documentation).
pub fn install(lua: &Lua, guard: &Rc<Guard>) -> mlua::Result<()> {
    let globals = lua.globals();
    let string: Table = globals.raw_get("string")?;
    let table: Table = globals.raw_get("table")?;

    let core = lua.create_table()?;
    let g = guard.clone();
    core.raw_set(
        "find",
        lua.create_function(move |lua, args: MultiValue| {
            g.check()?;
            reply(lua, find(lua, &g, &args, "find", true))
        })?,
    )?;
    let g = guard.clone();
    core.raw_set(
        "match",
        lua.create_function(move |lua, args: MultiValue| {
            g.check()?;
            reply(lua, find(lua, &g, &args, "match", false))
        })?,
    )?;
    let g = guard.clone();
    core.raw_set(
        "gsub",
        lua.create_function(move |lua, args: MultiValue| {
            g.check()?;
            reply(lua, gsub(lua, &g, &args))
        })?,
    )?;
    let g = guard.clone();
    core.raw_set(
        "rep",
        lua.create_function(move |lua, args: MultiValue| {
            g.check()?;
            reply(lua, rep(lua, &g, &args))
        })?,
    )?;
    let g = guard.clone();
    core.raw_set(
        "gmatch",
        lua.create_function(move |lua, args: MultiValue| {
            g.check()?;
            let start = (|| -> Result<GmatchState, Outcome> {
                let subject = string_arg(lua, &args, 0, "gmatch")?;
                let pattern = string_arg(lua, &args, 1, "gmatch")?;
                let len = subject.as_bytes().len();
                let init = start_position(opt_integer(&args, 2, "gmatch", 1)?, len) - 1;
                Ok(GmatchState {
                    subject,
                    pattern,
                    from: init.min(len + 1),
                    last_match: None,
                })
            })();
            let mut state = match start {
                Ok(state) => state,
                Err(outcome) => return reply(lua, Err(outcome)),
            };
            let g = g.clone();
            let next = lua.create_function_mut(move |lua, ()| {
                g.check()?;
                reply(lua, gmatch_next(lua, &g, &mut state))
            })?;
            reply(lua, Ok(vec![Value::Function(next)]))
        })?,
    )?;
    // Checks the clock before a call on large inputs (see the module's documentation).
    let g = guard.clone();
    let price = lua.create_function(move |_, args: MultiValue| {
        g.check()?;
        let size = input_size(&args);
        if size >= LARGE_INPUT {
            g.charge_or_raise(size / BYTES_PER_STEP)?;
        }
        Ok(())
    })?;
    lua.load(
        r##"
        local core, price, string, table, error, select, type, math, ipairs, pcall = ...
        local function finish(ok, ...)
            if ok then return ... end
            error((...), 0)
        end
        local find, match, gsub, rep, gmatch = core.find, core.match, core.gsub, core.rep, core.gmatch
        string.find = function(...) return finish(find(...)) end
        string.match = function(...) return finish(match(...)) end
        string.gsub = function(...) return finish(gsub(...)) end
        string.rep = function(...) return finish(rep(...)) end
        string.gmatch = function(...)
            local next = finish(gmatch(...))
            return function() return finish(next()) end
        end
        -- A wrapped C function would be named 'native' or '?' in its argument errors: name it, and
        -- point at the caller (the wrapper's frame is gone: `return named(...)` is a tail call).
        local function named(full, ok, ...)
            if ok then return ... end
            local message = ...
            if type(message) == "string" then
                local replaced, text = gsub(message, "'[^']*'", "'" .. full .. "'", 1)
                if replaced then message = text end
            end
            error(message, 2)
        end
        for _, name in ipairs({ "format", "upper", "lower", "reverse" }) do
            local native, full = string[name], "string." .. name
            string[name] = function(...) price(...) return named(full, pcall(native, ...)) end
        end
        for _, name in ipairs({ "concat", "sort" }) do
            local native = table[name]
            table[name] = function(t, ...) price(t) return native(t, ...) end
        end

        -- Written in Lua so that their loops are counted (the C ones trust `__len`).
        local function check_table(t, name)
            if type(t) ~= "table" then
                error(("bad argument #1 to '%s' (table expected, got %s)"):format(name, t == nil and "no value" or type(t)), 3)
            end
        end
        local function integer(v, n, name)
            local i = math.tointeger(v)
            if i then return i end
            if type(v) == "number" then
                error(("bad argument #%d to '%s' (number has no integer representation)"):format(n, name), 3)
            end
            error(("bad argument #%d to '%s' (number expected, got %s)"):format(n, name, v == nil and "no value" or type(v)), 3)
        end
        table.insert = function(t, ...)
            check_table(t, "insert")
            local n = select("#", ...)
            local e = #t + 1
            if n == 1 then
                t[e] = ...
                return
            elseif n ~= 2 then
                error("wrong number of arguments to 'insert'", 2)
            end
            local pos, value = ...
            pos = integer(pos, 2, "insert")
            if pos < 1 or pos > e then
                error("bad argument #2 to 'insert' (position out of bounds)", 2)
            end
            for i = e, pos + 1, -1 do
                t[i] = t[i - 1]
            end
            t[pos] = value
        end
        table.remove = function(t, pos)
            check_table(t, "remove")
            local size = #t
            if pos == nil then
                pos = size
            else
                pos = integer(pos, 2, "remove")
            end
            if pos ~= size and (pos < 1 or pos > size + 1) then
                error("bad argument #2 to 'remove' (position out of bounds)", 2)
            end
            local value = t[pos]
            while pos < size do
                t[pos] = t[pos + 1]
                pos = pos + 1
            end
            t[pos] = nil
            return value
        end
        table.move = function(a1, f, e, t, a2)
            f, e, t = integer(f, 2, "move"), integer(e, 3, "move"), integer(t, 4, "move")
            check_table(a1, "move")
            if a2 == nil then a2 = a1 end
            if e >= f then
                if not (f > 0 or e < math.maxinteger + f) then
                    error("bad argument #3 to 'move' (too many elements to move)", 2)
                end
                if t > math.maxinteger - (e - f) then
                    error("bad argument #4 to 'move' (destination wrap around)", 2)
                end
                if t > e or t <= f or a1 ~= a2 then
                    for i = 0, e - f do
                        a2[t + i] = a1[f + i]
                    end
                else
                    for i = e - f, 0, -1 do
                        a2[t + i] = a1[f + i]
                    end
                end
            end
            return a2
        end
        "##,
    )
    .set_name("=strlib")
    .call::<()>((
        core,
        price,
        string,
        table,
        globals.raw_get::<Function>("error")?,
        globals.raw_get::<Function>("select")?,
        globals.raw_get::<Function>("type")?,
        globals.raw_get::<Table>("math")?,
        globals.raw_get::<Function>("ipairs")?,
        globals.raw_get::<Function>("pcall")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same calls through Lua's own library and through the sandbox's must agree.
    #[test]
    fn matches_the_c_library() {
        let native = Lua::new();
        let sandboxed = Lua::new();
        let guard = Guard::new(u64::MAX / 4, 1 << 30);
        guard.begin();
        install(&sandboxed, &guard).unwrap();
        let cases: &[&str] = &[
            r#"return string.find("hello world", "o w")"#,
            r#"return string.find("hello world", "o", 6)"#,
            r#"return string.find("hello world", "l+")"#,
            r#"return string.find("hello", "")"#,
            r#"return string.find("hello", "", 10)"#,
            r#"return string.find("hello", "", 6)"#,
            r#"return string.find("a.b", ".", 1, true)"#,
            r#"return string.find("abc", "b", -1)"#,
            r#"return string.find("abc", "b", -10)"#,
            r#"return string.match("key = value", "^(%w+)%s*=%s*(.-)$")"#,
            r#"return string.match("  x", "^%s*()")"#,
            r#"return string.match("[[x]]", "%b[]")"#,
            r#"return string.match("THE (quick) fox", "%f[%a]%a+")"#,
            r#"return string.match("abcabc", "(a)(b)c%1%2")"#,
            r#"return string.match("2024-01-05", "(%d+)-(%d+)-(%d+)")"#,
            r#"return string.match("x=1, y=22", "y=(%d+)")"#,
            r#"return string.match("aaa", "a-b")"#,
            r#"return string.match("aaab", "a-b")"#,
            r#"return string.match("ab", "a?b?c?")"#,
            r#"return string.match("[a]", "[]a[]+")"#,
            r#"return string.match("a-b", "[a%-]+")"#,
            r#"return string.match("0x1F", "0[xX](%x+)")"#,
            r#"return string.match("\v\f", "%s+")"#,
            r#"return string.match("hello", "()ll()")"#,
            r#"return string.match(12345, "3(4)")"#,
            r#"return string.gsub("hello world", "o", "0")"#,
            r#"return string.gsub("hello world", "(o)", "[%1%0%%]", 1)"#,
            r#"return string.gsub("abc", "", "-")"#,
            r#"return string.gsub("hello world", "%w+", "%0 %0")"#,
            r#"return string.gsub("$name is $age", "%$(%w+)", { name = "bob", age = 42 })"#,
            r#"return string.gsub("$name $x", "%$(%w+)", { name = "bob" })"#,
            r#"return string.gsub("a b c", "%a", function(c) if c == "b" then return false end return c:upper() end)"#,
            r#"return string.gsub("abc", "^a", "x")"#,
            r#"return string.gsub("abc", "()", "%1")"#,
            r#"return string.gsub("abc", "b*", "-")"#,
            r#"local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t + 1] = k .. v end return table.concat(t, ",")"#,
            r#"local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t + 1] = w end return table.concat(t, ",")"#,
            r#"local t = {} for w in string.gmatch("abc", "") do t[#t + 1] = "x" end return #t"#,
            r#"local t = {} for w in string.gmatch("abc", "b*") do t[#t + 1] = "[" .. w .. "]" end return table.concat(t)"#,
            r#"local t = {} for p in string.gmatch("hello", "()l") do t[#t + 1] = p end return table.concat(t, ",")"#,
            r#"local t = {} for w in string.gmatch("a1b2c3", "%a", 3) do t[#t + 1] = w end return table.concat(t)"#,
            r#"return string.rep("ab", 3, ",")"#,
            r#"return string.rep("ab", 0), string.rep("", 5), string.rep("x", 2)"#,
            r#"return pcall(string.find, "a", "%")"#,
            r#"return pcall(string.find, "a", "[a")"#,
            r#"return pcall(string.find, "a", "(a")"#,
            r#"return pcall(string.find, "a", "a)")"#,
            r#"return pcall(string.find, "a", "%1")"#,
            r#"return pcall(string.find, "a", "%f")"#,
            r#"return pcall(string.find, "a", "%b")"#,
            r#"return pcall(string.gsub, "a", "a", "%2")"#,
            r#"return pcall(string.gsub, "a", "a", "%")"#,
            r#"return pcall(string.gsub, "a", "a", {a = {}})"#,
            r#"local t = {1, 2, 3} table.insert(t, 4) table.insert(t, 1, 0) return table.concat(t, ",")"#,
            r#"local t = {1, 2, 3} local r = table.remove(t, 1) return r, table.concat(t, ","), table.remove(t), #t"#,
            r#"local t = {} return table.remove(t), #t, table.remove(t, 0), table.remove(t, 1)"#,
            r#"return table.concat(table.move({1, 2, 3, 4, 5}, 2, 4, 1), ",")"#,
            r#"return table.concat(table.move({1, 2, 3, 4, 5}, 1, 3, 3), ",")"#,
            r#"return table.concat(table.move({1, 2, 3}, 1, 3, 2, {}), ",", 2, 4)"#,
            r#"return pcall(function() table.insert({1}, 5, 2) end)"#,
            r#"return pcall(function() table.insert({1}, 1, 2, 3) end)"#,
            r##"return select("#", string.find("abc", "x")), select("#", string.match("abc", "x"))"##,
        ];
        for case in cases {
            let expected = native.load(*case).set_name("=test").eval::<MultiValue>();
            let got = sandboxed.load(*case).set_name("=test").eval::<MultiValue>();
            let show = |r: mlua::Result<MultiValue>| match r {
                Ok(values) => values
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .map(|v| v.split(" at ").next().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(err) => format!("error: {err}"),
            };
            assert_eq!(show(got), show(expected), "{case}");
        }
    }

    #[test]
    fn a_backtracking_pattern_trips_within_its_budget() {
        let lua = Lua::new();
        let guard = Guard::new(50_000_000, 1 << 30);
        guard.begin();
        install(&lua, &guard).unwrap();
        // Lua's own matcher needs hours for this; the budget (0.2 s of work) stops it. The bound
        // below is wall time on a possibly loaded machine, far above the budget, far below hours.
        let started = std::time::Instant::now();
        let result = lua
            .load(r#"return string.find(string.rep("a", 100000), ".-.-.-.-.-b")"#)
            .exec();
        assert!(result.is_err());
        assert_eq!(guard.tripped(), Some(TripKind::Cpu));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}
