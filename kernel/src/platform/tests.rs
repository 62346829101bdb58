//! Host tests of the seam's simulation and of `PerCpu`.

use super::*;

#[test]
fn irq_save_restore_nests() {
    assert!(irqs_enabled());
    let outer = local_irq_save();
    assert!(!irqs_enabled());
    let inner = local_irq_save();
    local_irq_restore(inner);
    assert!(!irqs_enabled(), "inner restore must not re-enable");
    local_irq_restore(outer);
    assert!(irqs_enabled());
}

#[test]
fn live_threads_get_distinct_cpu_ids() {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let ids: Vec<usize> = (0..8)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let id = cpu_id();
                b.wait();
                id
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "{ids:?}");
}

#[test]
fn interrupt_context_is_simulated() {
    assert!(!in_interrupt());
    host::run_as_interrupt(|| {
        assert!(in_interrupt());
        assert!(!irqs_enabled());
    });
    assert!(!in_interrupt() && irqs_enabled());
}

#[test]
fn per_cpu_slots_are_private() {
    let table = std::sync::Arc::new(PerCpu::new(|| 0u64));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (t, b) = (table.clone(), barrier.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    t.with(|v| *v += 1);
                }
                // All four are alive here, so their CPU ids differ.
                b.wait();
                t.with(|v| *v)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1000);
    }
}

#[test]
#[should_panic(expected = "PerCpu::with re-entered on CPU")]
fn nested_with_on_the_same_table_panics() {
    let table = PerCpu::new(|| 0u64);
    table.with(|outer| {
        // Without the busy flag this would be a second `&mut` to the
        // slot `outer` points at.
        table.with(|inner| *inner += 1);
        *outer += 1;
    });
}

#[test]
fn nested_with_names_the_table_and_leaves_it_usable() {
    let table = PerCpu::new(|| 0u64);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        table.with(|_| table.with(|_| ()));
    }))
    .expect_err("a nested with must panic");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("PerCpu<u64>"), "{msg}");
    assert!(msg.contains("would alias its slot"), "{msg}");
    // The unwind released the slot and restored interrupts.
    assert!(irqs_enabled());
    assert_eq!(table.with(|v| *v), 0);
    // Different tables nest fine.
    let other = PerCpu::new(|| 1u64);
    assert_eq!(table.with(|a| other.with(|b| *a + *b)), 1);
}
