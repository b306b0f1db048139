//! Times the host's share of a stream of small dispatches through wgpu, to find where a
//! small op's 15 µs of host time goes (`fovea-bench --only dispatch` reports fovea's). Each
//! variant records 1,024 one-workgroup dispatches, submitting every 32 as fovea does, and
//! reports host microseconds per dispatch (median of 20 streams after a warm-up): in all,
//! and in `finish` and `submit`. The GPU's work is waited for after each stream, untimed.
//!
//! - `fovea`: what `Ctx::dispatch` does: the pipeline's bind group layout fetched, a bind
//!   group made, and a compute pass opened, for every dispatch;
//! - `layout once`: the layout fetched once;
//! - `bind once`: one bind group for every dispatch (and the layout once);
//! - `one pass`: a compute pass per submission, bind groups made per dispatch;
//! - `one pass, bind once`: both.

use std::time::Instant;

mod lab;

const SHADER: &str = "
var<immediate> p: vec4<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < p.x) {
        y[g.x] = x[g.x] + 1.0;
    }
}
";

const STREAM: usize = 1024;
const SUBMIT_EVERY: usize = 32;

#[derive(Clone, Copy, PartialEq)]
struct Variant {
    layout_once: bool,
    bind_once: bool,
    one_pass: bool,
}

fn main() {
    let (adapter, device, queue) = lab::open(wgpu::Features::IMMEDIATES);
    assert!(
        device.features().contains(wgpu::Features::IMMEDIATES),
        "host_lab needs immediates"
    );
    println!("adapter: {:?}", adapter.get_info().name);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let buffers: Vec<wgpu::Buffer> = (0..2)
        .map(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
        .collect();
    let bind = |layout: &wgpu::BindGroupLayout, i: usize| {
        // Alternate the two buffers' roles, as a chain of ops does.
        let (x, y) = (&buffers[i % 2], &buffers[1 - i % 2]);
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("main"),
            layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: x.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: y.as_entire_binding(),
                },
            ],
        })
    };
    let layout = pipeline.get_bind_group_layout(0);
    let fixed = bind(&layout, 0);
    let wait = || {
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("poll");
    };
    // Host microseconds per dispatch: in all, in finish, in submit.
    let stream = |v: Variant| -> [f64; 3] {
        let (mut finish, mut submit) = (0.0, 0.0);
        let start = Instant::now();
        for chunk in 0..STREAM / SUBMIT_EVERY {
            let mut enc = device.create_command_encoder(&Default::default());
            let record = |pass: &mut wgpu::ComputePass, i: usize| {
                let made;
                let group = if v.bind_once {
                    &fixed
                } else if v.layout_once {
                    made = bind(&layout, i);
                    &made
                } else {
                    made = bind(&pipeline.get_bind_group_layout(0), i);
                    &made
                };
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.set_immediates(0, bytemuck::cast_slice(&[64u32, 0, 0, 0]));
                pass.dispatch_workgroups(1, 1, 1);
            };
            if v.one_pass {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for i in 0..SUBMIT_EVERY {
                    record(&mut pass, chunk * SUBMIT_EVERY + i);
                }
            } else {
                for i in 0..SUBMIT_EVERY {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    record(&mut pass, chunk * SUBMIT_EVERY + i);
                }
            }
            let t = Instant::now();
            let cb = enc.finish();
            finish += t.elapsed().as_secs_f64();
            let t = Instant::now();
            queue.submit([cb]);
            submit += t.elapsed().as_secs_f64();
        }
        let all = start.elapsed().as_secs_f64();
        wait();
        [all, finish, submit].map(|s| s * 1e6 / STREAM as f64)
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let variant = |layout_once, bind_once, one_pass| Variant {
        layout_once,
        bind_once,
        one_pass,
    };
    for (name, v) in [
        ("fovea", variant(false, false, false)),
        ("layout once", variant(true, false, false)),
        ("bind once", variant(true, true, false)),
        ("one pass", variant(true, false, true)),
        ("one pass, bind once", variant(true, true, true)),
    ] {
        for _ in 0..5 {
            stream(v);
        }
        let runs: Vec<[f64; 3]> = (0..20).map(|_| stream(v)).collect();
        let col = |i: usize| median(runs.iter().map(|r| r[i]).collect());
        println!(
            "{name:22} {:6.2} us per dispatch ({:5.2} in finish, {:5.2} in submit)",
            col(0),
            col(1),
            col(2)
        );
    }
}
