//! Reserved CPU cores for strategies (`--pin-strategies 2,3`): every other thread of the runner is
//! kept off those cores, and each strategy's thread runs on one of them. With `--busy-poll` this is
//! the low-latency layout: a strategy spinning on a core nothing else is scheduled on.

/// A CPU list that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--pin-strategies: {0}")]
pub struct AffinityError(String);

/// A list of CPUs as the command line or the config file gives it; empty by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(pub Vec<usize>);

impl CpuList {
    pub fn parse(text: &str) -> Result<CpuList, String> {
        parse_cpu_list(text).map(CpuList)
    }
}

/// The highest CPU number a list may name (Linux's own limit, `CONFIG_NR_CPUS`, is 8192).
pub const MAX_CPU: usize = 8191;

/// CPU numbers from a list such as `2`, `2,3` or `2-5,8`, in order, without repeats.
/// Numbers above [`MAX_CPU`] are refused before anything is expanded.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("{text:?} is not a CPU list such as 2,3 or 2-5");
    let number = |s: &str| match s.trim().parse::<usize>() {
        Ok(cpu) if cpu <= MAX_CPU => Ok(cpu),
        Ok(cpu) => Err(format!(
            "CPU {cpu} in {text:?} is out of range: CPUs are numbered 0 to {MAX_CPU}"
        )),
        Err(_) => Err(bad()),
    };
    let mut seen = vec![false; MAX_CPU + 1];
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((first, last)) => number(first)?..=number(last)?,
            None => number(part)?..=number(part)?,
        };
        if range.is_empty() {
            return Err(bad());
        }
        for cpu in range {
            if !std::mem::replace(&mut seen[cpu], true) {
                cpus.push(cpu);
            }
        }
    }
    Ok(cpus)
}

/// Keeps the calling thread, and every thread it starts from now on, off `reserved`. Call it before
/// the runner starts other threads. Fails if a reserved CPU is not one this process may use, or if
/// no CPU would be left for the rest of the runner.
pub fn reserve(reserved: &[usize]) -> Result<(), AffinityError> {
    let allowed = os::allowed()?;
    if let Some(cpu) = reserved.iter().find(|cpu| !allowed.contains(cpu)) {
        return Err(AffinityError(format!(
            "CPU {cpu} is not available to this process (it may use {allowed:?})"
        )));
    }
    let rest: Vec<usize> = allowed.into_iter().filter(|cpu| !reserved.contains(cpu)).collect();
    if rest.is_empty() {
        return Err(AffinityError(format!(
            "reserving {reserved:?} leaves no CPU for the rest of the runner (streams, journal, timers)"
        )));
    }
    os::set(&rest)
}

/// Runs the calling thread on `cpu` only.
pub fn pin_current_thread(cpu: usize) -> Result<(), AffinityError> {
    os::set(&[cpu])
}

/// Lets thread `tid` of this process (a number from `/proc/self/task`) run on `cpus` only; for tools
/// such as the end-to-end bench that place threads they did not start.
pub fn pin_thread(tid: i32, cpus: &[usize]) -> Result<(), AffinityError> {
    os::set_for(tid, cpus)
}

#[cfg(target_os = "linux")]
mod os {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    use super::AffinityError;

    /// The CPUs the calling thread may run on.
    pub fn allowed() -> Result<Vec<usize>, AffinityError> {
        let set =
            sched_getaffinity(Pid::from_raw(0)).map_err(|e| AffinityError(format!("reading the CPU mask: {e}")))?;
        Ok((0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect())
    }

    pub fn set(cpus: &[usize]) -> Result<(), AffinityError> {
        set_for(0, cpus)
    }

    /// `tid` 0 is the calling thread.
    pub fn set_for(tid: i32, cpus: &[usize]) -> Result<(), AffinityError> {
        let mut set = CpuSet::new();
        for &cpu in cpus {
            set.set(cpu).map_err(|e| AffinityError(format!("CPU {cpu}: {e}")))?;
        }
        sched_setaffinity(Pid::from_raw(tid), &set)
            .map_err(|e| AffinityError(format!("setting the CPU mask {cpus:?} of thread {tid}: {e}")))
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::AffinityError;

    fn unsupported() -> AffinityError {
        AffinityError("pinning threads to CPUs is supported on Linux only".into())
    }

    pub fn allowed() -> Result<Vec<usize>, AffinityError> {
        Err(unsupported())
    }

    pub fn set(_cpus: &[usize]) -> Result<(), AffinityError> {
        Err(unsupported())
    }

    pub fn set_for(_tid: i32, _cpus: &[usize]) -> Result<(), AffinityError> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_cpu_lists_are_refused_at_once() {
        let started = std::time::Instant::now();
        let err = parse_cpu_list("0-99999999999").unwrap_err();
        assert!(err.contains("out of range") && err.contains("8191"), "{err}");
        assert!(parse_cpu_list("8192").is_err());
        assert_eq!(parse_cpu_list("0-8191").map(|l| l.len()), Ok(8192));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn cpu_lists_parse_like_taskset_lists() {
        assert_eq!(parse_cpu_list("3"), Ok(vec![3]));
        assert_eq!(parse_cpu_list("2,3"), Ok(vec![2, 3]));
        assert_eq!(parse_cpu_list("2-5,8"), Ok(vec![2, 3, 4, 5, 8]));
        assert_eq!(parse_cpu_list(" 1 , 1-2 "), Ok(vec![1, 2]), "repeats are dropped");
        for bad in ["", "a", "3-1", "1,", "-1", "1-2-3"] {
            let err = parse_cpu_list(bad).unwrap_err();
            assert!(err.contains("CPU list"), "{bad:?}: {err}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cpu_the_process_cannot_use_or_reserving_every_cpu_is_refused() {
        // On a thread of its own: the checks must not change the test runner's mask.
        std::thread::spawn(|| {
            let allowed = os::allowed().unwrap();
            let err = reserve(&[100_000]).unwrap_err().to_string();
            assert!(err.contains("not available"), "{err}");
            let err = reserve(&allowed).unwrap_err().to_string();
            assert!(err.contains("leaves no CPU"), "{err}");
            assert_eq!(os::allowed().unwrap(), allowed, "a refused reservation changes nothing");
            if let [first, second, ..] = allowed[..] {
                reserve(&[second]).unwrap();
                assert!(!os::allowed().unwrap().contains(&second));
                pin_current_thread(first).unwrap();
                assert_eq!(os::allowed().unwrap(), vec![first]);
            }
        })
        .join()
        .unwrap();
    }
}
