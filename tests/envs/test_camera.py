"""The camera: exact boxes, pixels that belong to their vehicle, stack order, backend parity."""

import numpy as np
import pytest
from highway_env.road.road import RoadNetwork

import drivelab.envs as de
from drivelab.envs.backends import cached_raster
from drivelab.envs.camera import CAR_RGB, EGO_RGB, HUD_ROWS, BatchedCamera, CameraConfig
from drivelab.envs.road import MARKING_RGB, ROAD_RGB
from drivelab.envs.states import VehicleBatch


def hand_made_states(x, y, heading):
    batch = VehicleBatch.empty(1, len(x))
    batch.x[0], batch.y[0], batch.heading[0] = x, y, heading
    batch.present[:] = True
    batch.track_id[0] = np.arange(len(x))
    batch.class_id[0, 0] = 1
    return batch


RGB_ONE_FRAME = CameraConfig(color="rgb", stack=1)


def render(states, config=RGB_ONE_FRAME):
    raster = cached_raster(RoadNetwork.straight_road_network(3, speed_limit=30), config.metres_per_pixel)
    camera = BatchedCamera(config, states.num_envs)
    camera.render(states, [raster] * states.num_envs, np.ones(states.num_envs, bool))
    return camera.observation(), camera.ground_truth(states), raster


def test_boxes_closed_form_for_axis_aligned_vehicles():
    # ego at x=100 m sits at 0.3 * 128 = 38.4 px -> snapped; a car 10 m ahead, one lane right
    states = hand_made_states([100.0, 110.0, 90.0], [4.0, 8.0, 0.0], [0.0, 0.0, 0.0])
    obs, truth, raster = render(states)
    boxes = truth[0]["boxes"]
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_array_equal(widths, [10, 10, 10])  # 5 m / 0.5 m/px
    np.testing.assert_array_equal(heights, [4, 4, 4])  # 2 m / 0.5 m/px
    # one car is 20 px right and 8 px below the ego, the other 20 px left and 8 px above
    np.testing.assert_array_equal(boxes[1, :2] - boxes[0, :2], [20, 8])
    np.testing.assert_array_equal(boxes[2, :2] - boxes[0, :2], [-20, -8])
    np.testing.assert_allclose(truth[0]["distances_m"], [0.0, np.hypot(10, 4), np.hypot(10, 4)])
    np.testing.assert_array_equal(truth[0]["classes"], [1, 0, 0])
    # ego centre projects to ego_position within the half pixel the grid snap allows
    centre = (boxes[0, :2] + boxes[0, 2:]) / 2
    np.testing.assert_allclose(centre, [0.3 * 128, 0.5 * 64], atol=0.5)


def test_box_encloses_exactly_the_vehicle_pixels():
    states = hand_made_states([100.0, 112.3, 91.7], [4.0, 7.1, 0.6], [0.0, 0.35, -0.2])
    obs, truth, _ = render(states)
    frame = obs[0].transpose(1, 2, 0)  # (H, W, 3)
    for box, cls in zip(truth[0]["boxes"], truth[0]["classes"]):
        colour = EGO_RGB if cls == 1 else CAR_RGB
        mask = np.all(frame == colour, axis=-1)
        x1, y1, x2, y2 = box
        inside = mask[y1:y2, x1:x2]
        # every edge row and column of the box holds a vehicle pixel (tight) ...
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    # ... and no vehicle pixel lies outside every box (complete)
    car_mask = np.all(frame == CAR_RGB, axis=-1)
    covered = np.zeros_like(car_mask)
    for x1, y1, x2, y2 in truth[0]["boxes"][truth[0]["classes"] == 0]:
        covered[y1:y2, x1:x2] = True
    assert not (car_mask & ~covered).any()


def test_boxes_clip_at_the_frame_border():
    # 0.3 * 64 m = 19.2 m are visible behind the ego: a car 18 m behind sticks out of the left edge
    states = hand_made_states([100.0, 82.0], [4.0, 4.0], [0.0, 0.0])
    _, truth, _ = render(states)
    box = truth[0]["boxes"][1]
    assert box[0] == 0 and 0 < box[2] < 10
    states = hand_made_states([100.0, 60.0], [4.0, 4.0], [0.0, 0.0])
    _, truth, _ = render(states)
    assert len(truth[0]["boxes"]) == 1  # 40 m behind: only the ego is visible


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_live_boxes_match_projected_positions_and_pixels(backend):
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, backend=backend, observation="camera", seed=3,
                  camera={"color": "rgb", "ground_truth": True})
    obs, infos = env.reset()
    config = env.camera_config
    checked = rotated = 0
    # Lane changes left and right (one env each) so that some cars are drawn rotated.
    for actions in ([1, 1], [1, 1], [2, 0], [0, 2], [2, 0], [0, 2]):
        obs, _, terminated, truncated, infos = env.step(np.array(actions, np.int64))
        states = env.vehicle_states()
        for b, truth in enumerate(infos["ground_truth"]):
            frame = obs[b, -3:].transpose(1, 2, 0)
            ego_box = truth["boxes"][truth["classes"] == 1][0]
            ego_centre = (ego_box[:2] + ego_box[2:]) / 2
            for box, track in zip(truth["boxes"], truth["track_ids"]):
                slot = np.flatnonzero(states.track_id[b] == track)[0]
                if box[0] == 0 or box[1] == 0 or box[2] == config.width or box[3] == config.height:
                    continue  # clipped at the border: its centre is not the vehicle's
                offset_m = np.array([states.x[b, slot], states.y[b, slot]]) - [states.x[b, 0], states.y[b, 0]]
                expected = ego_centre + offset_m / config.metres_per_pixel
                np.testing.assert_allclose((box[:2] + box[2:]) / 2, expected, atol=1.0)
                x1, y1, x2, y2 = box
                colour = EGO_RGB if slot == 0 else CAR_RGB
                painted = np.all(frame[y1:y2, x1:x2] == colour, axis=-1)  # (h, w) this car's colour
                if abs(states.heading[b, slot]) <= 1e-3:
                    assert painted.all()  # an axis-aligned car fills its box
                else:
                    # A rotated car: the box is still exactly its drawn pixels' extent, so every
                    # edge row and column of the box holds one of them, and most of the box is car.
                    assert painted[0].any() and painted[-1].any() and painted[:, 0].any() and painted[:, -1].any()
                    assert painted.mean() >= 0.5
                    rotated += 1
                checked += 1
    assert checked >= 12 and rotated >= 1
    env.close()


def test_frame_stack_is_oldest_to_newest_and_frames_are_not_blank():
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=2, observation="camera", seed=0)
    previous, _ = env.reset()
    assert not previous[:, :3].any()  # history is empty after reset
    for _ in range(5):
        obs, _, terminated, truncated, _ = env.step(np.full(2, 3, np.int64))
        for b in np.flatnonzero(~(terminated | truncated)):
            np.testing.assert_array_equal(obs[b, :3], previous[b, 1:])
        previous = obs
    newest = obs[:, -1]
    gray_road = int(round(0.2989 * ROAD_RGB[0] + 0.587 * ROAD_RGB[1] + 0.114 * ROAD_RGB[2]))
    assert (newest == gray_road).mean() > 0.1
    assert (newest == 255).any()  # lane markings
    assert len(np.unique(newest)) >= 4  # off-road, road, markings, vehicles


def test_both_backends_render_the_same_frame_for_the_same_states():
    reference = de.make_vec("drivelab/highway-fast-v0", backend="highway-env", observation="camera", seed=4)
    batched = de.make_vec("drivelab/highway-fast-v0", backend="envpool", observation="camera", seed=4)
    reference.reset()
    batched.reset()
    for _ in range(3):
        obs_ref, *_ = reference.step(np.ones(1, np.int64))
    states = reference.vehicle_states()
    rasters_ref = reference.sim.rasters(np.arange(1), 0.5)
    rasters_pool = batched.sim.rasters(np.arange(1), 0.5)
    np.testing.assert_array_equal(rasters_ref[0].rgb, rasters_pool[0].rgb)
    cameras = [BatchedCamera(reference.camera_config, 1) for _ in range(2)]
    frames = []
    for camera, rasters in zip(cameras, (rasters_ref, rasters_pool)):
        camera.render(states, rasters, np.ones(1, bool))
        frames.append(camera.observation())
    np.testing.assert_array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames[0][0, -1], obs_ref[0, -1])


def test_resolution_and_colour_options():
    env = de.make_vec("drivelab/highway-fast-v0", num_envs=1, observation="camera", seed=0,
                      camera={"width": 96, "height": 48, "metres_per_pixel": 0.25, "color": "rgb", "stack": 2,
                              "ground_truth": True})
    obs, infos = env.reset()
    assert obs.shape == (1, 6, 48, 96)
    ego_box = infos["ground_truth"][0]["boxes"][0]
    assert ego_box[2] - ego_box[0] == 20 and ego_box[3] - ego_box[1] == 8  # 5 m x 2 m at 0.25 m/px
    frame = obs[0, 3:].transpose(1, 2, 0)
    assert np.all(frame == MARKING_RGB, axis=-1).any()


def test_reading_only_nearby_vehicles_draws_the_same_frames():
    env = de.make_vec("drivelab/highway-v0", num_envs=4, backend="envpool", observation="camera", seed=2,
                  camera={"ground_truth": True})
    env.reset()
    for _ in range(3):
        env.step(np.full(4, 3, np.int64))
    ids = np.arange(4)
    near = env.sim.states(ids, "pose", env.camera_config.view_reach_m)
    full = env.sim.states(ids, "full")
    assert near.present.sum() < full.present.sum()  # highway-v0 has 50 cars: most are far away
    outputs = []
    for states in (near, full):
        camera = BatchedCamera(env.camera_config, 4)
        camera.render(states, env.sim.rasters(ids, 0.5), np.ones(4, bool))
        outputs.append((camera.observation(), camera.ground_truth(states)))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["track_ids"], b["track_ids"])


HEADING = CameraConfig(color="rgb", stack=1, align="heading", ground_truth=True)


def test_heading_view_turns_with_the_ego():
    # The ego drives along +y (heading pi/2); a car 20 m ahead of it, another 8 m to its right.
    states = hand_made_states([100.0, 100.0, 92.0], [4.0, 24.0, 4.0], [np.pi / 2, np.pi / 2, np.pi / 2])
    obs, truth, _ = render(states, HEADING)
    boxes = truth[0]["boxes"]
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_array_equal(widths, [10, 10, 10])  # drawn along the frame's x axis
    np.testing.assert_array_equal(heights, [4, 4, 4])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_allclose(centres[0], [0.3 * 128, 0.5 * 64], atol=0.5)  # the ego at ego_position
    np.testing.assert_allclose(centres[1] - centres[0], [40, 0], atol=0.5)  # ahead = right
    np.testing.assert_allclose(centres[2] - centres[0], [0, 16], atol=0.5)  # x - 8 m is its right side


def test_heading_view_rotated_boxes_enclose_exactly_their_pixels_and_corners():
    states = hand_made_states([100.0, 108.0, 94.0], [4.0, 9.0, 1.0], [0.7, 0.2, 1.3])
    obs, truth, _ = render(states, HEADING)
    frame = obs[0].transpose(1, 2, 0)
    for box, cls, corners in zip(truth[0]["boxes"], truth[0]["classes"], truth[0]["corners"]):
        mask = np.all(frame == (EGO_RGB if cls == 1 else CAR_RGB), axis=-1)
        x1, y1, x2, y2 = box
        inside = mask[y1:y2, x1:x2]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        # the box lies within the oriented rectangle's extent, and covers it up to a pixel
        low, high = corners.min(0), corners.max(0)
        assert x1 >= np.floor(low[0]) and y1 >= np.floor(low[1])
        assert x2 <= np.ceil(high[0]) and y2 <= np.ceil(high[1])
        assert x1 <= low[0] + 1 and y1 <= low[1] + 1 and x2 >= high[0] - 1 and y2 >= high[1] - 1
    assert not (np.all(frame == CAR_RGB, axis=-1) & ~covered(truth[0]["boxes"], frame.shape[:2])).any()


def covered(boxes, shape):
    mask = np.zeros(shape, bool)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = True
    return mask


def test_world_view_corners_are_the_axis_aligned_box_for_unrotated_cars():
    states = hand_made_states([100.0, 110.0], [4.0, 8.0], [0.0, 0.0])
    _, truth, _ = render(states, CameraConfig(color="rgb", stack=1, ground_truth=True, align="world"))
    for box, corners in zip(truth[0]["boxes"], truth[0]["corners"]):
        np.testing.assert_allclose(corners.min(0), box[:2], atol=0.5)
        np.testing.assert_allclose(corners.max(0), box[2:], atol=0.5)


@pytest.mark.parametrize("env_id, align", [("drivelab/highway-fast-v0", "world"), ("drivelab/roundabout-v0", "heading"),
                                           ("drivelab/parking-v0", "world"), ("drivelab/racetrack-v0", "heading")])
def test_auto_alignment_is_the_scenarios_default(env_id, align):
    env = de.make_vec(env_id, num_envs=1, observation="camera", seed=0)
    assert env.camera_config.align == align
    obs, _ = env.reset()
    gray_road = int(round(0.2989 * ROAD_RGB[0] + 0.587 * ROAD_RGB[1] + 0.114 * ROAD_RGB[2]))
    assert (obs[0, -1] == gray_road).mean() > 0.15  # the frame shows road, not mostly off-road
    env.close()


@pytest.mark.parametrize("backend", ["envpool", "highway-env"])
def test_parking_goal_and_walls_are_drawn_under_the_vehicles_but_get_no_boxes(backend):
    from drivelab.envs.camera import GOAL_RGB, OBSTACLE_RGB
    from drivelab.envs.states import GOAL

    env = de.make_vec("drivelab/parking-v0", num_envs=4, backend=backend, observation="camera", seed=0,
                      camera={"color": "rgb", "ground_truth": True, "align": "world"})
    obs, infos = env.reset()
    objects = env.sim.objects(np.arange(4))
    states = env.vehicle_states()
    config = env.camera_config
    checked = 0
    for b in range(4):
        frame = obs[b, -3:].transpose(1, 2, 0)
        goal = np.flatnonzero(objects.present[b] & (objects.class_id[b] == GOAL))[0]
        ego_box = infos["ground_truth"][b]["boxes"][0]
        ego_centre = (ego_box[:2] + ego_box[2:]) / 2
        offset = np.array([objects.x[b, goal] - states.x[b, 0], objects.y[b, goal] - states.y[b, 0]])
        col, row = np.floor(ego_centre + offset / config.metres_per_pixel).astype(int)
        if 1 <= col < config.width - 1 and 1 <= row < config.height - 1:
            window = frame[row - 1 : row + 2, col - 1 : col + 2]
            assert np.all(window == GOAL_RGB, axis=-1).any()  # the goal spot, within a pixel of its centre
            checked += 1
        assert np.all(frame == OBSTACLE_RGB, axis=-1).any()  # the lot's walls
        assert set(infos["ground_truth"][b]["classes"].tolist()) <= {0, 1}  # objects are no detections
    assert checked >= 1
    env.close()


@pytest.mark.parametrize("align", ["world", "heading"])
def test_the_speed_bar_adds_rows_and_changes_nothing_in_the_view(align):
    states = hand_made_states([100.0, 112.3, 91.7], [4.0, 7.1, 0.6], [0.1, 0.35, -0.2])
    plain_config = CameraConfig(stack=3, ground_truth=True, align=align)
    hud_config = CameraConfig(stack=3, ground_truth=True, align=align, hud=True)
    assert hud_config.observation_shape == (3, 64 + HUD_ROWS, 128)
    raster = cached_raster(RoadNetwork.straight_road_network(3, speed_limit=30), 0.5)
    plain, hud = BatchedCamera(plain_config, 1), BatchedCamera(hud_config, 1)
    for k, speed in enumerate([30.0, 10.0, -5.0, 40.0]):  # reverse (parking) draws from the right
        states.speed[0, 0] = speed
        for camera in (plain, hud):
            camera.render(states, [raster], np.array([k == 0]))
        view = hud.observation()[0]
        np.testing.assert_array_equal(view[:, :64], plain.observation()[0])
        assert [t["boxes"].tolist() for t in hud.ground_truth(states)] == \
            [t["boxes"].tolist() for t in plain.ground_truth(states)]
    # oldest first: the bars of speeds 10, -5 and 40 m/s over 128 px (40 m/s = full width)
    bars = view[:, 64:] == 255  # (stack, rows, width)
    assert (bars.sum(-1) == np.array([[32, 32], [16, 16], [128, 128]])).all()
    assert bars[0, :, :32].all() and bars[1, :, -16:].all()
    assert set(np.unique(view[:, 64:])) <= {0, 255}
