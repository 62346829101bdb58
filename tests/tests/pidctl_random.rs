//! Random pidctl programs, checked line by line against the host model
//! (`pidlab_tests::pidctl_model`).
//!
//! Each test generates one script from a fixed seed, steering it with the
//! model's state so that most commands name tasks that exist and some hit
//! each rule: names taken or unknown, zombie parents, `set_tid` in use, out
//! of range, without a reaper or without the capability, too deep a
//! namespace, a dead namespace init, a `pid_max` outside its bounds, a
//! full namespace, `wait-any` choosing among zombies in Linux's `children`
//! order (orphans appended), with and without `nohang`. The model computes every answer as it goes; the kernel
//! runs the script in one boot; then the two lists must agree line by line
//! (`ok` answers exactly, `err` answers by errno). Scripts end by exiting
//! and reaping every task, and the kernel's invariant check must pass.

use pidlab_tests::pidctl_model::{
    Answer, Cmd, MAX_PID_NS_LEVEL, Model, PID_MAX_MIN, RESERVED_PIDS, Spawn, Task,
};
use pidlab_tests::{Boot, Run};

/// SplitMix64: a fixed seed gives the same script on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in 100.
    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// How a script leans: relative weights of the commands and how often a
/// spawn uses each option.
#[derive(Clone, Copy)]
struct Mix {
    spawn: u32,
    exit: u32,
    wait: u32,
    /// `wait-any`, a third of them without `nohang`.
    wait_any: u32,
    pid_max: u32,
    ps: u32,
    /// Percent of spawns that create a namespace.
    newns: u32,
    /// Percent of spawns whose parent is the deepest live task.
    deepest: u32,
    /// Percent of spawns with a `set_tid` list.
    set_tid: u32,
    /// Percent of spawns with `nocap`.
    nocap: u32,
    /// Fill one namespace with a small `pid_max` until it runs out.
    fill: bool,
}

/// A script and the answers the model expects, one per command.
struct Program {
    commands: Vec<Cmd>,
    answers: Vec<Answer>,
}

impl Program {
    fn script(&self) -> String {
        let lines: Vec<String> = self.commands.iter().map(Cmd::to_string).collect();
        lines.join("\n") + "\n"
    }
}

struct Generator {
    rng: Rng,
    model: Model,
    mix: Mix,
    program: Program,
    names: usize,
    /// `wait-any`s whose parent had two zombie children or more to
    /// choose from.
    choices: usize,
}

impl Generator {
    fn new(seed: u64, mix: Mix, strategy: &str) -> Generator {
        Generator {
            rng: Rng(seed),
            model: Model::for_strategy(strategy),
            mix,
            program: Program {
                commands: Vec::new(),
                answers: Vec::new(),
            },
            names: 0,
            choices: 0,
        }
    }

    fn emit(&mut self, cmd: Cmd) -> Answer {
        let answer = self.model.run(&cmd);
        self.program.commands.push(cmd);
        self.program.answers.push(answer.clone());
        answer
    }

    fn fresh_name(&mut self) -> String {
        self.names += 1;
        format!("t{}", self.names)
    }

    /// A task's name: mostly one that `wanted` accepts, sometimes any
    /// task, init, or nobody.
    fn name_where(&mut self, wanted: impl Fn(&Task) -> bool) -> String {
        let matching: Vec<&str> = self.model.tasks[1..]
            .iter()
            .filter(|t| wanted(t))
            .map(|t| t.name.as_str())
            .collect();
        let r = self.rng.below(100);
        if r < 85 && !matching.is_empty() {
            return self.rng.pick(&matching).to_string();
        }
        if r < 92 {
            let i = self.rng.below(self.model.tasks.len());
            return self.model.tasks[i].name.clone();
        }
        if r < 96 { "init" } else { "ghost" }.to_string()
    }

    /// One random command, chosen by the mix's weights (and a `check`
    /// now and then).
    fn step(&mut self) {
        let m = self.mix;
        let weights = [m.spawn, m.exit, m.wait, m.wait_any, m.pid_max, m.ps, 1];
        let mut r = self.rng.below(weights.iter().sum::<u32>() as usize) as u32;
        let op = weights
            .iter()
            .position(|&w| {
                let hit = r < w;
                r = r.wrapping_sub(w);
                hit
            })
            .expect("r is below the sum of the weights");
        let cmd = match op {
            0 => return self.spawn(),
            1 => Cmd::Exit {
                name: self.name_where(|t| !t.zombie),
                code: self
                    .rng
                    .pick(&[None, Some(0), Some(1), Some(-7), Some(i32::MAX)]),
            },
            2 => Cmd::Wait {
                name: self.name_where(|t| t.zombie),
            },
            3 => self.wait_any(),
            4 => Cmd::PidMax {
                name: self.name_where(|_| true),
                max: self.rng.pick(&[
                    300,
                    301,
                    302,
                    333,
                    400,
                    1000,
                    32768,
                    4_194_304,
                    4_194_305,
                    0,
                    -1,
                    1 << 40,
                ]),
            },
            5 => Cmd::Ps,
            _ => Cmd::Check,
        };
        self.emit(cmd);
    }

    /// `wait-any` by a parent: half the time the one with the most
    /// zombie children (so the order decides), else mostly one with
    /// children, init a quarter of the time (the default parent).
    fn wait_any(&mut self) -> Cmd {
        let parents: Vec<String> = self
            .model
            .tasks
            .iter()
            .filter(|t| self.model.has_children(t))
            .map(|t| t.name.clone())
            .collect();
        let busiest = parents
            .iter()
            .max_by_key(|p| self.model.zombie_children(p))
            .filter(|p| self.model.zombie_children(p) >= 2)
            .cloned();
        let parent = match busiest {
            Some(p) if self.rng.chance(50) => p,
            _ if self.rng.chance(25) => "init".to_string(),
            _ => self.name_where(|t| parents.contains(&t.name)),
        };
        if self.model.zombie_children(&parent) >= 2 {
            self.choices += 1;
        }
        Cmd::WaitAny {
            parent,
            nohang: !self.rng.chance(33),
        }
    }

    fn spawn(&mut self) {
        let name = if self.rng.chance(92) || self.model.tasks.len() < 2 {
            self.fresh_name()
        } else {
            let i = self.rng.below(self.model.tasks.len());
            self.model.tasks[i].name.clone()
        };
        let deepest = self
            .model
            .alive()
            .max_by_key(|t| t.pids.len())
            .map(|t| t.name.clone());
        let parent = match deepest {
            Some(d) if self.rng.chance(self.mix.deepest) => d,
            _ => self.name_where(|t| !t.zombie),
        };
        let newns = self.rng.chance(self.mix.newns);
        let set_tid = if self.rng.chance(self.mix.set_tid) {
            self.set_tid_for(&parent, newns)
        } else {
            Vec::new()
        };
        let nocap = self.rng.chance(self.mix.nocap);
        // init is the default parent: name it only half the time.
        let parent = (parent != "init" || self.rng.chance(50)).then_some(parent);
        self.emit(Cmd::Spawn(Spawn {
            name,
            parent,
            newns,
            set_tid,
            nocap,
        }));
    }

    /// A `set_tid` list for a child of `parent`: per level, a number that
    /// is free, in use, at or past `pid_max`, or not 1 in a namespace
    /// without a reaper; sometimes one level too many.
    fn set_tid_for(&mut self, parent: &str, newns: bool) -> Vec<i32> {
        // The namespaces the child's levels fall in, innermost first
        // (`None`: the one a `newns` spawn creates).
        let mut chain: Vec<Option<usize>> = Vec::new();
        if newns {
            chain.push(None);
        }
        match self.model.find(parent) {
            Some(p) => {
                let mut ns = Some(self.model.tasks[p].ns());
                while let Some(n) = ns {
                    chain.push(Some(n));
                    ns = self.model.ns[n].parent;
                }
            }
            None => chain.push(Some(0)),
        }
        let len = if self.rng.chance(8) {
            chain.len() + 1
        } else {
            1 + self.rng.below(chain.len().min(3))
        };
        (0..len)
            .map(|depth| {
                let Some(Some(n)) = chain.get(depth) else {
                    return self.rng.pick(&[1, 1, 1, 2, 50]);
                };
                let ns = &self.model.ns[*n];
                let used: Vec<u32> = ns.ids.iter().copied().collect();
                match self.rng.below(10) {
                    0..=3 => {
                        // Free, below pid_max (a few tries).
                        let span = (ns.pid_max - 1).max(1) as usize;
                        let mut tid = 1 + self.rng.below(span) as u32;
                        for _ in 0..8 {
                            if !ns.ids.contains(&tid) {
                                break;
                            }
                            tid = 1 + self.rng.below(span) as u32;
                        }
                        tid as i32
                    }
                    4 | 5 if !used.is_empty() => self.rng.pick(&used) as i32,
                    6 => ns.pid_max - 1,
                    7 => ns.pid_max,
                    _ => self.rng.pick(&[0, -1, 1, 299, 300, 301]),
                }
            })
            .collect()
    }

    /// Lowers `pid_max` where a live task is, then spawns children there
    /// until the namespace has no free number (the last spawn is EAGAIN).
    /// Then frees one number below RESERVED_PIDS and one at or above it:
    /// the next spawn wraps to the second, and the one after that is
    /// EAGAIN again, the first being out of reach.
    fn fill(&mut self) {
        let parent = self.name_where(|t| !t.zombie);
        let Some(p) = self.model.find(&parent) else {
            return;
        };
        let ns = self.model.tasks[p].ns();
        let max = PID_MAX_MIN + self.rng.below(30) as i32;
        self.emit(Cmd::PidMax {
            name: parent.clone(),
            max: max.into(),
        });
        let mut children = Vec::new();
        for _ in 0..max + 5 {
            let name = self.fresh_name();
            let answer = self.emit(Cmd::Spawn(Spawn {
                parent: Some(parent.clone()),
                ..Spawn::new(name.clone())
            }));
            if let Answer::Err(_) = answer {
                break;
            }
            children.push(name);
        }
        let nr_in_ns = |m: &Model, name: &str| {
            let t = &m.tasks[m.find(name)?];
            t.pids.iter().find(|(n, _)| *n == ns).map(|(_, nr)| *nr)
        };
        for reserved in [true, false] {
            let pick = children.iter().position(|c| {
                nr_in_ns(&self.model, c).is_some_and(|nr| (nr < RESERVED_PIDS) == reserved)
            });
            if let Some(i) = pick {
                let name = children.swap_remove(i);
                self.emit(Cmd::Exit {
                    name: name.clone(),
                    code: None,
                });
                self.emit(Cmd::Wait { name });
            }
        }
        for _ in 0..2 {
            let name = self.fresh_name();
            self.emit(Cmd::Spawn(Spawn {
                parent: Some(parent.clone()),
                ..Spawn::new(name)
            }));
        }
    }

    /// Exits every live task and reaps every zombie, then the full check.
    fn finish(&mut self) {
        let alive: Vec<String> = self.model.alive().map(|t| t.name.clone()).collect();
        for name in alive {
            self.emit(Cmd::Exit { name, code: None });
        }
        let zombies: Vec<String> = self.model.tasks[1..]
            .iter()
            .map(|t| t.name.clone())
            .collect();
        for name in zombies {
            self.emit(Cmd::Wait { name });
        }
        let last = self.emit(Cmd::Check);
        assert_eq!(last, Answer::Ok("invariants: ok".into()));
    }

    /// The script's body: `steps` random commands (and the fill, if the
    /// mix has one, at a random point), calling `observe` after each.
    fn body(&mut self, steps: usize, mut observe: impl FnMut(&Generator)) {
        let fill_at = self.mix.fill.then(|| self.rng.below(steps));
        for i in 0..steps {
            if fill_at == Some(i) {
                self.fill();
            }
            self.step();
            observe(self);
        }
    }
}

/// One random program: its seed, its mix and how many random commands.
struct Script {
    seed: u64,
    mix: Mix,
    steps: usize,
    /// The kernel versions (pidctl's `strategy=`) it runs under, a boot
    /// each; between them the scripts cover all four.
    strategies: &'static [&'static str],
}

impl Script {
    fn generate(&self, strategy: &str) -> Program {
        let mut g = Generator::new(self.seed, self.mix, strategy);
        g.body(self.steps, |_| {});
        g.finish();
        g.program
    }
}

const SPAWNS_EXITS_WAITS: Script = Script {
    seed: 0x5eed_0001,
    mix: Mix {
        spawn: 10,
        exit: 6,
        wait: 6,
        wait_any: 3,
        pid_max: 1,
        ps: 1,
        newns: 15,
        deepest: 10,
        set_tid: 30,
        nocap: 10,
        fill: false,
    },
    steps: 400,
    strategies: &["stock", "exit-deferred"],
};

const DEEP_NAMESPACES: Script = Script {
    seed: 0x5eed_0002,
    mix: Mix {
        spawn: 12,
        exit: 4,
        wait: 4,
        wait_any: 3,
        pid_max: 1,
        ps: 1,
        newns: 60,
        deepest: 70,
        set_tid: 30,
        nocap: 5,
        fill: false,
    },
    steps: 300,
    strategies: &["stock", "both", "lockless"],
};

const SMALL_PID_MAX: Script = Script {
    seed: 0x5eed_0003,
    mix: Mix {
        spawn: 10,
        exit: 5,
        wait: 5,
        wait_any: 3,
        pid_max: 2,
        ps: 1,
        newns: 20,
        deepest: 10,
        set_tid: 25,
        nocap: 5,
        fill: true,
    },
    steps: 120,
    strategies: &["pidmap-once", "both", "lockless"],
};

/// The answers the kernel printed, in order.
fn answers(run: &Run) -> Vec<&str> {
    run.serial()
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("err "))
        .collect()
}

fn run_and_compare(script: &Script) {
    for strategy in script.strategies {
        run_and_compare_as(script, strategy);
    }
}

fn run_and_compare_as(script: &Script, strategy: &str) {
    let seed = script.seed;
    let program = script.generate(strategy);
    let run = Boot::new()
        .smp(2)
        .script(&program.script())
        .params(&format!("strategy={strategy}"))
        .run();
    run.expect_success().expect_serial("invariants: ok");
    let got = answers(&run);
    for (i, (cmd, want)) in program.commands.iter().zip(&program.answers).enumerate() {
        let Some(line) = got.get(i) else {
            panic!(
                "seed {seed:#x}, {strategy}: the kernel answered {} of {} commands; the first unanswered is `{cmd}`",
                got.len(),
                program.commands.len()
            );
        };
        if !want.matches(line) {
            let from = i.saturating_sub(8);
            let context: Vec<String> = (from..i)
                .map(|j| format!("  {}  ->  {}", program.commands[j], got[j]))
                .collect();
            panic!(
                "seed {seed:#x}, {strategy}, command {i}: `{cmd}`\n  model:  {want}\n  kernel: {line}\n\
                 the commands before it:\n{}",
                context.join("\n")
            );
        }
    }
    assert_eq!(
        got.len(),
        program.commands.len(),
        "seed {seed:#x}, {strategy}: more answers than commands"
    );
}

#[test]
fn random_spawns_exits_and_waits() {
    run_and_compare(&SPAWNS_EXITS_WAITS);
}

#[test]
fn random_deep_namespaces_and_dying_inits() {
    run_and_compare(&DEEP_NAMESPACES);
}

#[test]
fn random_small_pid_max_wraps_and_runs_out() {
    run_and_compare(&SMALL_PID_MAX);
}

/// The generator reaches what the tests are for: every errno pidctl can
/// answer with, a wrap past RESERVED_PIDS, a namespace at the deepest
/// level, and `wait-any`s that choose among zombies (checked on the host,
/// without booting).
#[test]
fn the_scripts_reach_every_rule() {
    use std::collections::BTreeSet;

    let mut errnos = BTreeSet::new();
    let mut deepest = 0;
    let mut wrapped = false;
    let mut choices = 0;
    for script in [&SPAWNS_EXITS_WAITS, &DEEP_NAMESPACES, &SMALL_PID_MAX] {
        let mut g = Generator::new(script.seed, script.mix, "stock");
        g.body(script.steps, |g| {
            let levels = g.model.ns.iter().map(|n| n.level);
            deepest = deepest.max(levels.max().unwrap_or(0));
            wrapped |= g.model.ns.iter().any(|n| n.wraps > 0);
        });
        g.finish();
        choices += g.choices;
        errnos.extend(g.program.answers.iter().filter_map(|a| match a {
            Answer::Err(e) => Some(*e),
            Answer::Ok(_) => None,
        }));
    }
    let want: BTreeSet<&str> = [
        "EAGAIN", "ECHILD", "EDEADLK", "EEXIST", "EINVAL", "ENOMEM", "ENOSPC", "EPERM", "ESRCH",
    ]
    .into();
    assert_eq!(errnos, want);
    assert_eq!(deepest, MAX_PID_NS_LEVEL);
    assert!(wrapped);
    assert!(choices >= 10, "{choices} wait-any with a choice of zombies");
}
