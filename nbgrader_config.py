"""nbgrader configuration: solutions/ is the instructor's source, course/ the student release.

Layout: solutions/<assignment>/<assignment>.ipynb  ->  course/<assignment>/<assignment>.ipynb
"""
c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "ntk-course"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
