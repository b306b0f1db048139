//! Times the pieces of one small op's round trip through wgpu on the first high-performance
//! adapter, to find where a sync's fixed cost goes (`fovea-bench --only latency` gives the
//! whole). Each case is a loop of: record, submit, wait until the queue is empty; the
//! median of 300 after a second of warm-up, in microseconds.
//!
//! - `empty`: an empty submission;
//! - `dispatch`: one tiny dispatch with a bind group made once;
//! - `+write`: the same after `queue.write_buffer` of its 16-byte uniform (fovea uploads its
//!   uniforms so, which adds a staging copy to every submission);
//! - `+bind`: and a bind group made for the dispatch (as fovea does);
//! - `blocking`: `+bind`, waiting with a blocking poll instead of spinning;
//! - `immediates`: the dispatch with its parameters as immediates (push constants), no
//!   uniform buffer (when the adapter has the feature).
//!
//! For each it also reports the host time spent in `queue.submit` alone.

use std::time::{Duration, Instant};

mod lab;

const SHADER: &str = "
@group(0) @binding(0) var<uniform> p: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x == 0u) {
        y[0] = y[0] + f32(p.x);
    }
}
";

const SHADER_IMM: &str = "
var<immediate> p: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x == 0u) {
        y[0] = y[0] + f32(p.x);
    }
}
";

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Empty,
    Dispatch,
    Write,
    Bind,
    Blocking,
    Immediates,
}

fn main() {
    let (adapter, device, queue) = lab::open(wgpu::Features::IMMEDIATES);
    let imm = device.features().contains(wgpu::Features::IMMEDIATES);
    println!(
        "adapter: {:?}, immediates: {imm} (max {} bytes)",
        adapter.get_info().name,
        adapter.limits().max_immediate_size
    );
    let module = |src: &str| {
        device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        })
    };
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module(SHADER),
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let y = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let uniform = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = || {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: y.as_entire_binding(),
                },
            ],
        })
    };
    let fixed = bind();
    let imm_parts = imm.then(|| {
        let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: false },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 16,
        });
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: Some(&layout),
            module: &module(SHADER_IMM),
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let g = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &bgl,
            entries: &[wgpu::BindGroupEntry {
                binding: 1,
                resource: y.as_entire_binding(),
            }],
        });
        (p, g)
    });

    let spin = || loop {
        if device
            .poll(wgpu::PollType::Poll)
            .expect("poll")
            .is_queue_empty()
        {
            break;
        }
        std::hint::spin_loop();
    };
    let once = |case: Case| -> (f64, f64) {
        let t = Instant::now();
        let mut enc = device.create_command_encoder(&Default::default());
        if case == Case::Immediates {
            let (p, g) = imm_parts.as_ref().unwrap();
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(p);
            pass.set_bind_group(0, g, &[]);
            pass.set_immediates(0, bytemuck::cast_slice(&[1u32, 0, 0, 0]));
            pass.dispatch_workgroups(1, 1, 1);
        } else if case != Case::Empty {
            if case != Case::Dispatch {
                queue.write_buffer(&uniform, 0, bytemuck::cast_slice(&[1u32, 0, 0, 0]));
            }
            let made = matches!(case, Case::Bind | Case::Blocking).then(&bind);
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, made.as_ref().unwrap_or(&fixed), &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        let s = Instant::now();
        queue.submit([enc.finish()]);
        let submit = s.elapsed().as_secs_f64() * 1e6;
        if case == Case::Blocking {
            device
                .poll(wgpu::PollType::wait_indefinitely())
                .expect("poll");
        } else {
            spin();
        }
        (t.elapsed().as_secs_f64() * 1e6, submit)
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, case) in [
        ("empty", Case::Empty),
        ("dispatch", Case::Dispatch),
        ("+write", Case::Write),
        ("+bind", Case::Bind),
        ("blocking", Case::Blocking),
        ("immediates", Case::Immediates),
    ] {
        if case == Case::Immediates && !imm {
            println!("{name:12} (no immediates on this adapter)");
            continue;
        }
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_secs(1) {
            once(case);
        }
        let (total, submit): (Vec<f64>, Vec<f64>) = (0..300).map(|_| once(case)).unzip();
        println!(
            "{name:12} {:8.1} us round trip, {:8.1} us in submit",
            median(total),
            median(submit)
        );
    }
}
